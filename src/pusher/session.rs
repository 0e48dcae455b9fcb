//! One Pusher connection's life: greeting, messages from the client (subscribe, unsubscribe,
//! ping, sign-in, client events), and clean-up when it closes.

use serde_json::value::RawValue;

use super::messages::{self, MemberError, SigninData, SubscribeData};
use super::names::{self, Kind, NameError};
use super::peer::PeerMsg;
use super::{CACHE_TTL, owner_of};
use crate::core::Core;
use crate::core::conn::{ConnKey, flag};

/// Protocol versions accepted on `/app/{key}?protocol=N`.
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

impl Core {
    /// Which app a `/app/{key}` request is for, or the error to greet it with.
    pub(crate) fn pusher_greeting(&self, app_key: &str, query: &str) -> (u16, Option<(u16, String)>) {
        let Some(app) = self.pusher.app_by_key(app_key) else {
            return (0, Some((4001, format!("App key {app_key} does not exist"))));
        };
        if !self.pusher.apps[app as usize].enabled {
            return (app, Some((4003, "Application is disabled".into())));
        }
        let protocol = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned());
        match protocol.as_deref().map(str::parse::<u32>) {
            // Absent: protocol 7, as soketi and Reverb assume.
            None => {}
            Some(Ok(p)) if PROTOCOLS.contains(&p) => {}
            Some(Ok(p)) => return (app, Some((4007, format!("Unsupported protocol version {p}: use 7")))),
            Some(Err(_)) => return (app, Some((4007, "Unsupported protocol version: use 7".into()))),
        }
        (app, None)
    }

    /// The WebSocket is open: greet it, or refuse it with `pusher:error` and a close.
    pub(crate) fn pusher_open(&mut self, key: ConnKey, refusal: Option<(u16, String)>) {
        if let Some((code, message)) = refusal {
            return self.pusher_fail(key, code, &message);
        }
        let Some(conn) = self.conn(key) else { return };
        let app = conn.app as usize;
        if self.pusher.apps[app].max_connections == 0 {
            return self.pusher_established(key);
        }
        let owner = owner_of(app as u32, "", self.settings.shards);
        let from = self.socket_ref(key);
        if owner == self.shard {
            let granted = self.quota_reserve(app as u32);
            self.quota_answer(key, app as u32, granted);
        } else {
            self.send_to_peer(owner, PeerMsg::AppReserve { app: app as u32, from });
        }
    }

    /// The app's owner core answered a quota reservation.
    pub(crate) fn quota_answer(&mut self, key: ConnKey, app: u32, granted: bool) {
        let alive = self.conn(key).is_some_and(|c| c.phase == crate::core::conn::Phase::Open);
        match (granted, alive) {
            (true, true) => self.pusher_established(key),
            (false, true) => self.pusher_fail(key, 4004, "Application is over connection quota"),
            // Gone meanwhile: give the reservation back.
            (true, false) => self.quota_release(app),
            (false, false) => {}
        }
    }

    fn pusher_established(&mut self, key: ConnKey) {
        let socket_id = self.socket_ref(key).format();
        let Some(conn) = self.conn_mut(key) else { return };
        conn.set(flag::ADMITTED);
        let app = conn.app as usize;
        self.pusher.connections[app] += 1;
        self.send(key, messages::connection_established(&socket_id, self.settings.activity_timeout));
    }

    /// Sends `pusher:error` with a closing code, then closes with that code.
    pub(crate) fn pusher_fail(&mut self, key: ConnKey, code: u16, message: &str) {
        self.send(key, messages::error(Some(code), message, None));
        self.close_ws(key, code, message);
    }

    /// A text message from a Pusher client.
    pub(crate) fn pusher_text(&mut self, key: ConnKey, text: &[u8]) {
        if !self.conn(key).is_some_and(|c| c.has(flag::ADMITTED)) {
            return;
        }
        let Some(msg) = messages::parse_client(text) else {
            log::debug!("ignoring a message that is not a Pusher event");
            return;
        };
        match msg.event.as_ref() {
            "pusher:ping" => self.send(key, messages::pong()),
            "pusher:pong" => {}
            "pusher:subscribe" => match messages::parse_data::<SubscribeData>(msg.data) {
                Some(d) => self.subscribe(key, d),
                None => log::debug!("ignoring pusher:subscribe without data"),
            },
            "pusher:unsubscribe" => {
                if let Some(channel) = messages::parse_data::<SubscribeData>(msg.data).and_then(|d| d.channel)
                {
                    self.unsubscribe(key, &channel);
                }
            }
            "pusher:signin" => {
                self.signin(key, messages::parse_data::<SigninData>(msg.data).unwrap_or_default())
            }
            name if name.starts_with("client-") => {
                self.client_event(key, name, msg.channel.as_deref(), msg.data);
            }
            other => log::debug!("ignoring unknown event {other:?}"),
        }
    }

    fn subscription_error(&mut self, key: ConnKey, channel: &str, kind: &str, error: &str, status: u16) {
        self.send(key, messages::subscription_error(channel, kind, error, status));
    }

    fn subscribe(&mut self, key: ConnKey, d: SubscribeData) {
        let Some(channel) = d.channel else { return };
        let Some(conn) = self.conn(key) else { return };
        let app_idx = conn.app as u32;
        let app = &self.pusher.apps[app_idx as usize];
        let class = match names::validate(&channel, app.max_channel_name_length) {
            Ok(c) => c,
            Err(e) => {
                let kind = if e == NameError::TooLong { "LimitReached" } else { "InvalidChannel" };
                let msg = e.message(app.max_channel_name_length);
                return self.subscription_error(key, &channel, kind, &msg, 4009);
            }
        };
        if let Some(id) = self.pusher.channels.lookup(app_idx, &channel)
            && conn.subs.contains(id)
        {
            // Already subscribed (or joining): confirm again, except presence, which confirms
            // once the owner answers.
            if class.kind != Kind::Presence {
                self.send(key, messages::subscription_succeeded(&channel, "{}"));
            }
            return;
        }
        if conn.subs.len() >= app.max_channels_per_connection {
            let msg =
                format!("A connection may subscribe to at most {} channels", app.max_channels_per_connection);
            return self.subscription_error(key, &channel, "LimitReached", &msg, 4100);
        }
        let socket_id = self.socket_ref(key).format();
        let auth = d.auth.as_deref().unwrap_or("");
        let (app_key, secret) = (app.key.clone(), app.secret.clone());
        let max_info = app.max_presence_member_bytes;
        let user_auth = app.user_authentication;
        let unauthorized = |core: &mut Core| {
            let msg = format!("Invalid signature for socket {socket_id} and channel {channel}");
            core.subscription_error(key, &channel, "AuthError", &msg, 401);
        };
        match class.kind {
            Kind::Public => {}
            Kind::Private | Kind::Encrypted => {
                if !super::auth::channel_auth_ok(&app_key, &secret, &socket_id, &channel, None, auth) {
                    return unauthorized(self);
                }
            }
            Kind::User => {
                let wanted = &channel[names::USER_PREFIX.len()..];
                let signed_in = self.pusher.signed_in.get(&key.idx).is_some_and(|u| &**u == wanted);
                if !user_auth || !signed_in {
                    let msg = "Sign in as this user before subscribing to its #server-to-user- channel";
                    return self.subscription_error(key, &channel, "AuthError", msg, 401);
                }
            }
            Kind::Presence => {
                let data = d.channel_data.as_deref().unwrap_or("");
                if !super::auth::channel_auth_ok(&app_key, &secret, &socket_id, &channel, Some(data), auth) {
                    return unauthorized(self);
                }
                let member = match messages::parse_member(data, max_info) {
                    Ok(m) => m,
                    Err(MemberError::Invalid(why)) => {
                        return self.subscription_error(key, &channel, "AuthError", why, 401);
                    }
                    Err(MemberError::IdTooLong) => {
                        return self.subscription_error(
                            key,
                            &channel,
                            "LimitReached",
                            "The user_id is longer than 128 characters",
                            4009,
                        );
                    }
                    Err(MemberError::InfoTooLarge) => {
                        let msg = format!("The user_info of a presence member is over {max_info} bytes");
                        return self.subscription_error(key, &channel, "LimitReached", &msg, 4301);
                    }
                };
                return self.presence_subscribe(key, app_idx, &channel, class, member);
            }
        }
        let id = self.pusher.channels.intern(app_idx, &channel, class);
        let subs = &mut self.pusher.channels.get_mut(id).expect("interned").subscribers;
        subs.insert(key.idx);
        let now = subs.len();
        self.subscribers_changed(app_idx, &channel, now - 1, now);
        if let Some(conn) = self.conn_mut(key) {
            conn.subs.insert(id);
        }
        self.send(key, messages::subscription_succeeded(&channel, "{}"));
        if class.cache {
            self.send_cached(key, app_idx, &channel);
        }
    }

    /// Sends a cache channel's last event, or `pusher:cache_miss`.
    pub(crate) fn send_cached(&mut self, key: ConnKey, app: u32, channel: &str) {
        let now = self.now;
        let hit = self.pusher.cache[app as usize]
            .get(channel)
            .filter(|c| now.saturating_sub(c.at) < CACHE_TTL)
            .map(|c| c.frame.clone());
        match hit {
            Some(frame) => self.send(key, frame),
            None => {
                self.send(key, messages::cache_miss(channel));
                self.webhook(app, serde_json::json!({"name": "cache_miss", "channel": channel}));
            }
        }
    }

    fn presence_subscribe(
        &mut self,
        key: ConnKey,
        app: u32,
        channel: &str,
        class: names::Class,
        member: messages::Member,
    ) {
        let id = self.pusher.channels.intern(app, channel, class);
        self.pusher.channels.get_mut(id).expect("interned").pending += 1;
        if let Some(conn) = self.conn_mut(key) {
            conn.subs.insert(id);
        }
        self.pusher.memberships.insert((key.idx, id), member.clone());
        let from = self.socket_ref(key);
        let owner = owner_of(app, channel, self.settings.shards);
        if owner == self.shard {
            self.presence_join(app, channel, from, member);
        } else {
            self.send_to_peer(owner, PeerMsg::PresenceJoin { app, channel: channel.into(), from, member });
        }
    }

    fn unsubscribe(&mut self, key: ConnKey, channel: &str) {
        let Some(conn) = self.conn(key) else { return };
        let app = conn.app as u32;
        let Some(id) = self.pusher.channels.lookup(app, channel) else { return };
        let Some(conn) = self.conn_mut(key) else { return };
        if !conn.subs.remove(id) {
            return;
        }
        self.leave_channel(key, app, id);
    }

    /// Removes the connection from channel `id` here, and from its presence membership.
    fn leave_channel(&mut self, key: ConnKey, app: u32, id: u32) {
        let Some(ch) = self.pusher.channels.get_mut(id) else { return };
        let was = ch.subscribers.len();
        ch.subscribers.remove(&key.idx);
        let now = ch.subscribers.len();
        let name = ch.name.clone();
        if now != was {
            self.subscribers_changed(app, &name, was, now);
        }
        if let Some(member) = self.pusher.memberships.remove(&(key.idx, id)) {
            let from = self.socket_ref(key);
            let owner = owner_of(app, &name, self.settings.shards);
            if owner == self.shard {
                self.presence_leave(app, &name, &member.id, from);
            } else {
                self.send_to_peer(
                    owner,
                    PeerMsg::PresenceLeave { app, channel: name, user_id: member.id.into(), from },
                );
            }
        }
        self.pusher.channels.release_if_unused(id);
    }

    fn signin(&mut self, key: ConnKey, d: SigninData) {
        let Some(conn) = self.conn(key) else { return };
        let app_idx = conn.app;
        let app = &self.pusher.apps[app_idx as usize];
        if !app.user_authentication {
            let msg = "User authentication is not enabled for this app";
            return self.send(key, messages::error(None, msg, None));
        }
        let socket_id = self.socket_ref(key).format();
        let (auth, user_data) = (d.auth.unwrap_or_default(), d.user_data.unwrap_or_default());
        let user = if super::auth::signin_auth_ok(&app.key, &app.secret, &socket_id, &user_data, &auth) {
            messages::parse_user_id(&user_data).filter(|id| names::valid_user_id(id))
        } else {
            None
        };
        let Some(user) = user else {
            return self.pusher_fail(key, 4009, "Connection not authorized.");
        };
        match self.pusher.signed_in.get(&key.idx) {
            Some(current) if **current == *user => {}
            Some(_) => {
                return self.pusher_fail(
                    key,
                    4009,
                    "Connection not authorized: already signed in as another user.",
                );
            }
            None => {
                self.pusher.signed_in.insert(key.idx, user.clone().into());
                self.pusher.users[app_idx as usize].entry(user.into()).or_default().push(key.idx);
                if let Some(conn) = self.conn_mut(key) {
                    conn.set(flag::SIGNED_IN);
                }
            }
        }
        self.send(key, messages::signin_success(&user_data));
    }

    fn client_event(&mut self, key: ConnKey, event: &str, channel: Option<&str>, data: Option<&RawValue>) {
        let Some(conn) = self.conn(key) else { return };
        let app_idx = conn.app as u32;
        let app = &self.pusher.apps[app_idx as usize];
        let Some(channel) = channel else { return };
        if !app.client_events {
            let msg = "Client events are not enabled for this app";
            return self.send(key, messages::error(None, msg, Some(channel)));
        }
        if !names::classify(channel).allows_client_events() {
            let msg = "Client events are only allowed on private and presence channels";
            return self.send(key, messages::error(None, msg, Some(channel)));
        }
        let data = data.map_or("null", |d| d.get());
        if event.len() > 200 || data.len() > app.max_event_bytes {
            let msg =
                format!("Client event name over 200 characters or data over {} bytes", app.max_event_bytes);
            return self.send(key, messages::error(None, &msg, Some(channel)));
        }
        let limit = app.client_event_rate;
        // Only subscribers (whose subscription succeeded) may send; others are ignored.
        let Some(id) = self.pusher.channels.lookup(app_idx, channel) else { return };
        let subscribed = self.pusher.channels.get(id).is_some_and(|c| c.subscribers.contains(&key.idx));
        if !subscribed {
            return;
        }
        let second = self.now as u16;
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.rate_second != second {
            conn.rate_second = second;
            conn.rate_count = 0;
        }
        if conn.rate_count >= limit {
            let msg = format!("Client event rejected: over the rate limit of {limit} per second");
            return self.send(key, messages::error(Some(4301), &msg, Some(channel)));
        }
        conn.rate_count += 1;
        let user_id = self.pusher.memberships.get(&(key.idx, id)).map(|m| m.id_json.clone());
        let frame = messages::client_event(event, channel, data, user_id.as_deref());
        let sender = self.socket_ref(key);
        self.publish(app_idx, channel, frame, Some(sender), None);
        if !self.pusher.apps[app_idx as usize].webhooks.is_empty() {
            let mut hook = serde_json::json!({"name": "client_event", "channel": channel, "event": event,
                "socket_id": sender.format()});
            hook["data"] = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
            if let Some(m) = self.pusher.memberships.get(&(key.idx, id)) {
                hook["user_id"] = serde_json::Value::String(m.id.clone());
            }
            self.webhook(app_idx, hook);
        }
    }

    /// The connection is going away: leave its channels, sign it out, release its quota.
    pub(crate) fn pusher_close(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else { return };
        let app = conn.app as u32;
        let admitted = conn.has(flag::ADMITTED);
        let subs = conn.subs.take_all();
        for id in subs {
            self.leave_channel(key, app, id);
        }
        if let Some(user) = self.pusher.signed_in.remove(&key.idx) {
            let users = &mut self.pusher.users[app as usize];
            if let Some(conns) = users.get_mut(&user) {
                conns.retain(|&c| c != key.idx);
                if conns.is_empty() {
                    users.remove(&user);
                }
            }
        }
        if admitted {
            self.pusher.connections[app as usize] -= 1;
            if self.pusher.apps[app as usize].max_connections > 0 {
                self.quota_release(app);
            }
        }
    }
}
