//! One Pusher connection's life: greeting, messages from the client (subscribe, unsubscribe,
//! ping, sign-in, client events), and clean-up when it closes.

use serde_json::value::RawValue;

use super::apps::AppIdx;
use super::conn_state::{PusherConn, flag};
use super::messages::{self, MemberError, SigninData, SubscribeData};
use super::names::{self, Kind, NameError};
use super::peer::PeerMsg;
use super::{CACHE_TTL, Net, Pusher, owner_of};
use crate::core::conn::ConnKey;
use crate::core::service::{Refusal, Upgrade};
use crate::protocol::http::Request;

/// Protocol versions accepted on `/app/{key}?protocol=N`.
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

impl Pusher {
    /// The connection state for a `/app/{key}` upgrade, or the error to greet it with.
    pub(crate) fn greeting(&mut self, app_key: &str, req: &Request<'_>) -> Upgrade<PusherConn> {
        let query = req.query();
        let refuse = |app: AppIdx, code: u16, message: String| Upgrade {
            state: PusherConn { app, ..PusherConn::default() },
            refusal: Some(Refusal { code, message }),
        };
        let Some(app) = self.apps.by_key(app_key) else {
            return refuse(AppIdx(0), 4001, format!("App key {app_key} does not exist"));
        };
        if !self.app(app).enabled {
            return refuse(app, 4003, "Application is disabled".into());
        }
        let origin = req.header_str("Origin");
        if !self.apps.origin_allowed(app, origin) {
            self.stats.origin_refused += 1;
            let msg = match origin {
                Some(o) => format!("Origin not allowed: {o} is not in this app's allowed_origins"),
                None => "Origin not allowed: the request has no Origin header".into(),
            };
            return refuse(app, 4009, msg);
        }
        let protocol = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned());
        match protocol.as_deref().map(str::parse::<u32>) {
            // Absent: protocol 7, as soketi and Reverb assume.
            None => {}
            Some(Ok(p)) if PROTOCOLS.contains(&p) => {}
            Some(Ok(p)) => return refuse(app, 4007, format!("Unsupported protocol version {p}: use 7")),
            Some(Err(_)) => return refuse(app, 4007, "Unsupported protocol version: use 7".into()),
        }
        Upgrade { state: PusherConn { app, ..PusherConn::default() }, refusal: None }
    }

    /// The WebSocket is open: greet it (once the app's quota admits it), or refuse it with
    /// `pusher:error` and a close.
    pub(crate) fn open(&mut self, e: &mut Net, key: ConnKey, refusal: Option<Refusal>) {
        if let Some(r) = refusal {
            return self.fail(e, key, r.code, &r.message);
        }
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        if self.app(app).max_connections == 0 {
            return self.established(e, key);
        }
        self.reserve_quota(e, key, app);
    }

    pub(crate) fn established(&mut self, e: &mut Net, key: ConnKey) {
        let socket_id = self.socket_ref(e, key).format();
        let activity_timeout = e.settings().activity_timeout;
        let Some(conn) = e.conn_mut(key) else { return };
        conn.ext.flags |= flag::ADMITTED;
        let app = conn.ext.app;
        self.connections[app.index()] += 1;
        e.send(key, messages::connection_established(&socket_id, activity_timeout));
        self.expect_authorization(e, key, app);
    }

    /// Sends `pusher:error` with a closing code, then closes with that code.
    pub(crate) fn fail(&mut self, e: &mut Net, key: ConnKey, code: u16, message: &str) {
        e.send(key, messages::error(Some(code), message, None));
        e.close_ws(key, code, message);
    }

    /// A text message from a Pusher client.
    pub(crate) fn text(&mut self, e: &mut Net, key: ConnKey, text: &[u8]) {
        if e.conn(key).is_none_or(|c| c.ext.flags & flag::ADMITTED == 0) {
            return;
        }
        let Some(msg) = messages::parse_client(text) else {
            log::debug!("ignoring a message that is not a Pusher event");
            return;
        };
        match msg.event.as_ref() {
            "pusher:ping" => e.send(key, messages::pong()),
            "pusher:pong" => {}
            "pusher:subscribe" => match messages::parse_data::<SubscribeData>(msg.data) {
                Some(d) => self.subscribe(e, key, d),
                None => log::debug!("ignoring pusher:subscribe without data"),
            },
            "pusher:unsubscribe" => {
                if let Some(channel) = messages::parse_data::<SubscribeData>(msg.data).and_then(|d| d.channel)
                {
                    self.unsubscribe(e, key, &channel);
                }
            }
            "pusher:signin" => {
                self.signin(e, key, messages::parse_data::<SigninData>(msg.data).unwrap_or_default())
            }
            name if name.starts_with("client-") => {
                self.client_event(e, key, name, msg.channel.as_deref(), msg.data);
            }
            other => log::debug!("ignoring unknown event {other:?}"),
        }
    }

    fn subscription_error(e: &mut Net, key: ConnKey, channel: &str, kind: &str, error: &str, status: u16) {
        e.send(key, messages::subscription_error(channel, kind, error, status));
    }

    fn subscribe(&mut self, e: &mut Net, key: ConnKey, d: SubscribeData) {
        let Some(channel) = d.channel.clone() else { return };
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        let a = self.app(app);
        let class = match names::validate(&channel, a.max_channel_name_length) {
            Ok(c) => c,
            Err(err) => {
                let kind = if err == NameError::TooLong { "LimitReached" } else { "InvalidChannel" };
                let msg = err.message(a.max_channel_name_length);
                return Self::subscription_error(e, key, &channel, kind, &msg, 4009);
            }
        };
        if let Some(id) = self.channels.lookup(app, &channel)
            && self.is_subscribed(e, key, id)
        {
            // Already subscribed (or joining): confirm again, except presence, which confirms
            // once the owner answers.
            if class.kind != Kind::Presence {
                e.send(key, messages::subscription_succeeded(&channel, "{}"));
            }
            return;
        }
        let max_channels = a.max_channels_per_connection;
        if self.sub_count(e, key) >= max_channels {
            let msg = format!("A connection may subscribe to at most {max_channels} channels");
            return Self::subscription_error(e, key, &channel, "LimitReached", &msg, 4100);
        }
        if let Err((kind, msg, status)) = self.authorize(e, key, app, &channel, class.kind, &d) {
            return Self::subscription_error(e, key, &channel, kind, &msg, status);
        }
        if class.kind == Kind::Presence {
            let data = d.channel_data.as_deref().unwrap_or("");
            let max_info = self.app(app).max_presence_member_bytes;
            let member = match messages::parse_member(data, max_info) {
                Ok(m) => m,
                Err(MemberError::Invalid(why)) => {
                    return Self::subscription_error(e, key, &channel, "AuthError", why, 401);
                }
                Err(MemberError::IdTooLong) => {
                    let msg = "The user_id is longer than 128 characters";
                    return Self::subscription_error(e, key, &channel, "LimitReached", msg, 4009);
                }
                Err(MemberError::InfoTooLarge) => {
                    let msg = format!("The user_info of a presence member is over {max_info} bytes");
                    return Self::subscription_error(e, key, &channel, "LimitReached", &msg, 4301);
                }
            };
            return self.presence_subscribe(e, key, app, &channel, class, member);
        }
        let id = self.channels.intern(app, &channel, class);
        let subs = &mut self.channels.get_mut(id).expect("interned").subscribers;
        subs.insert(key.idx);
        let now = subs.len();
        self.add_sub(e, key, id);
        e.send(key, messages::subscription_succeeded(&channel, "{}"));
        if class.needs_auth() {
            self.authorized(e, key);
        }
        if class.cache {
            self.send_cached(e, key, app, &channel);
        }
        // After the confirmation: a live count this causes must not reach the subscriber first.
        self.subscribers_changed(e, app, &channel, now - 1, now);
    }

    /// Checks a subscription's signature (private, encrypted, presence) or sign-in
    /// (`#server-to-user-`); the error is (kind, message, status).
    fn authorize(
        &self,
        e: &Net,
        key: ConnKey,
        app: AppIdx,
        channel: &str,
        kind: Kind,
        d: &SubscribeData,
    ) -> Result<(), (&'static str, String, u16)> {
        let a = self.app(app);
        let socket_id = self.socket_ref(e, key).format();
        let auth = d.auth.as_deref().unwrap_or("");
        let unauthorized =
            || ("AuthError", format!("Invalid signature for socket {socket_id} and channel {channel}"), 401);
        match kind {
            Kind::Public => Ok(()),
            Kind::Private | Kind::Encrypted => {
                if super::auth::channel_auth_ok(&a.key, &a.secret, &socket_id, channel, None, auth) {
                    Ok(())
                } else {
                    Err(unauthorized())
                }
            }
            Kind::Presence => {
                let data = d.channel_data.as_deref().unwrap_or("");
                if super::auth::channel_auth_ok(&a.key, &a.secret, &socket_id, channel, Some(data), auth) {
                    Ok(())
                } else {
                    Err(unauthorized())
                }
            }
            Kind::User => {
                let wanted = &channel[names::USER_PREFIX.len()..];
                let signed_in = self.signed_in.get(&key.idx).is_some_and(|u| &**u == wanted);
                if a.user_authentication && signed_in {
                    Ok(())
                } else {
                    let msg = "Sign in as this user before subscribing to its #server-to-user- channel";
                    Err(("AuthError", msg.into(), 401))
                }
            }
        }
    }

    /// Sends a cache channel's last event, or `pusher:cache_miss`.
    pub(crate) fn send_cached(&mut self, e: &mut Net, key: ConnKey, app: AppIdx, channel: &str) {
        let now = e.now();
        let hit = self.cache[app.index()]
            .get(channel)
            .filter(|c| now.saturating_sub(c.at) < CACHE_TTL)
            .map(|c| c.frame.clone());
        match hit {
            Some(frame) => e.send(key, frame),
            None => {
                e.send(key, messages::cache_miss(channel));
                self.webhook(app, serde_json::json!({"name": "cache_miss", "channel": channel}));
            }
        }
    }

    fn presence_subscribe(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        app: AppIdx,
        channel: &str,
        class: names::Class,
        member: messages::Member,
    ) {
        let id = self.channels.intern(app, channel, class);
        self.channels.get_mut(id).expect("interned").pending += 1;
        self.add_sub(e, key, id);
        self.memberships.insert((key.idx, id), member.clone());
        let from = self.socket_ref(e, key);
        let owner = owner_of(app, channel, e.settings().cores);
        if owner == e.shard() {
            self.presence_join(e, app, channel, from, member);
        } else {
            e.send_to_peer(owner, PeerMsg::PresenceJoin { app, channel: channel.into(), from, member });
        }
    }

    fn unsubscribe(&mut self, e: &mut Net, key: ConnKey, channel: &str) {
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        let Some(id) = self.channels.lookup(app, channel) else { return };
        if self.remove_sub(e, key, id) {
            self.leave_channel(e, key, app, id);
        }
    }

    /// Removes the connection from channel `id` here, and from its presence membership.
    fn leave_channel(&mut self, e: &mut Net, key: ConnKey, app: AppIdx, id: super::channels::ChannelId) {
        let Some(ch) = self.channels.get_mut(id) else { return };
        let was = ch.subscribers.len();
        ch.subscribers.remove(&key.idx);
        let now = ch.subscribers.len();
        let name = ch.name.clone();
        if now != was {
            self.subscribers_changed(e, app, &name, was, now);
        }
        if let Some(member) = self.memberships.remove(&(key.idx, id)) {
            let from = self.socket_ref(e, key);
            let owner = owner_of(app, &name, e.settings().cores);
            if owner == e.shard() {
                self.presence_leave(e, app, &name, &member.id, from);
            } else {
                let msg = PeerMsg::PresenceLeave { app, channel: name, user_id: member.id.into(), from };
                e.send_to_peer(owner, msg);
            }
        }
        self.channels.release_if_unused(id);
    }

    fn signin(&mut self, e: &mut Net, key: ConnKey, d: SigninData) {
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        let a = self.app(app);
        if !a.user_authentication {
            let msg = "User authentication is not enabled for this app";
            return e.send(key, messages::error(None, msg, None));
        }
        let from = self.socket_ref(e, key);
        let socket_id = from.format();
        let (auth, user_data) = (d.auth.unwrap_or_default(), d.user_data.unwrap_or_default());
        let user = if super::auth::signin_auth_ok(&a.key, &a.secret, &socket_id, &user_data, &auth) {
            messages::parse_user(&user_data).filter(|u| names::valid_user_id(&u.id))
        } else {
            None
        };
        let Some(user) = user else {
            return self.fail(e, key, 4009, "Connection not authorized.");
        };
        let watchlist = if a.watchlist_events {
            match watchlist_of(user.watchlist, a.max_watchlist_size) {
                Ok(list) => list,
                Err(msg) => return self.fail(e, key, 4009, &msg),
            }
        } else {
            Vec::new()
        };
        let watchlist_events = a.watchlist_events;
        let id = user.id;
        match self.signed_in.get(&key.idx) {
            // Signing in again as the same user changes nothing (the watchlist included).
            Some(current) if **current == *id => e.send(key, messages::signin_success(&user_data)),
            Some(_) => {
                let msg = "Connection not authorized: already signed in as another user.";
                self.fail(e, key, 4009, msg);
            }
            None => {
                self.signed_in.insert(key.idx, id.as_str().into());
                self.users[app.index()].entry(id.as_str().into()).or_default().push(key.idx);
                if let Some(conn) = e.conn_mut(key) {
                    conn.ext.flags |= flag::SIGNED_IN;
                }
                self.authorized(e, key);
                e.send(key, messages::signin_success(&user_data));
                if watchlist_events {
                    self.report_signin(e, app, &id, from);
                    if !watchlist.is_empty() {
                        self.start_watching(e, key, app, watchlist);
                    }
                }
            }
        }
    }

    fn client_event(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        event: &str,
        channel: Option<&str>,
        data: Option<&RawValue>,
    ) {
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        let a = self.app(app);
        let Some(channel) = channel else { return };
        if !a.client_events {
            let msg = "Client events are not enabled for this app";
            return e.send(key, messages::error(None, msg, Some(channel)));
        }
        if !names::classify(channel).allows_client_events() {
            let msg = "Client events are only allowed on private and presence channels";
            return e.send(key, messages::error(None, msg, Some(channel)));
        }
        let data = data.map_or("null", |d| d.get());
        if event.len() > 200 || data.len() > a.max_event_bytes {
            let msg =
                format!("Client event name over 200 characters or data over {} bytes", a.max_event_bytes);
            return e.send(key, messages::error(None, &msg, Some(channel)));
        }
        let limit = a.client_event_rate;
        // Only subscribers (whose subscription succeeded) may send; others are ignored.
        let Some(id) = self.channels.lookup(app, channel) else { return };
        if !self.channels.get(id).is_some_and(|c| c.subscribers.contains(&key.idx)) {
            return;
        }
        // The low 16 bits of the second: a window is told apart from the one 18 hours earlier.
        let second = (e.now() & 0xffff) as u16;
        let Some(conn) = e.conn_mut(key) else { return };
        let st = &mut conn.ext;
        if st.rate_second != second {
            st.rate_second = second;
            st.rate_count = 0;
        }
        if st.rate_count >= limit {
            let msg = format!("Client event rejected: over the rate limit of {limit} per second");
            return e.send(key, messages::error(Some(4301), &msg, Some(channel)));
        }
        st.rate_count += 1;
        let member = self.memberships.get(&(key.idx, id));
        let frame = messages::client_event(event, channel, data, member.map(|m| m.id_json.as_str()));
        let sender = self.socket_ref(e, key);
        let user_id = member.map(|m| m.id.clone());
        self.publish(e, app, channel, frame, Some(sender), None);
        if self.app(app).wants_webhook("client_event", Some(channel)) {
            let mut hook = serde_json::json!({"name": "client_event", "channel": channel, "event": event,
                "socket_id": sender.format()});
            hook["data"] = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
            if let Some(user_id) = user_id {
                hook["user_id"] = serde_json::Value::String(user_id);
            }
            self.webhook(app, hook);
        }
    }

    /// The connection is going away: leave its channels, sign it out, release its quota.
    pub(crate) fn close(&mut self, e: &mut Net, key: ConnKey) {
        let Some(conn) = e.conn(key) else { return };
        let app = conn.ext.app;
        let admitted = conn.ext.flags & flag::ADMITTED != 0;
        for id in self.take_subs(e, key) {
            self.leave_channel(e, key, app, id);
        }
        if let Some(user) = self.signed_in.remove(&key.idx) {
            let users = &mut self.users[app.index()];
            if let Some(conns) = users.get_mut(&user) {
                conns.retain(|&c| c != key.idx);
                if conns.is_empty() {
                    users.remove(&user);
                }
            }
            if self.app(app).watchlist_events {
                let from = self.socket_ref(e, key);
                self.report_signout(e, app, &user, from);
            }
        }
        self.stop_watching(e, key, app);
        if admitted {
            let n = &mut self.connections[app.index()];
            *n = n.saturating_sub(1);
            if self.app(app).max_connections > 0 {
                self.release_quota(e, app);
            }
        }
    }
}

impl Pusher {
    /// Closes this core's connections signed in as `user_id` (4009).
    pub(crate) fn terminate_local(&mut self, e: &mut Net, app: AppIdx, user_id: &str) {
        let Some(conns) = self.users[app.index()].get(user_id).cloned() else { return };
        for idx in conns {
            let Some((key, _)) = e.conn_at(idx) else { continue };
            self.fail(e, key, 4009, "You got disconnected by the app.");
        }
    }

    /// Closes every connection signed in as `user_id`, on every core (and node).
    pub(crate) fn terminate_user(&mut self, e: &mut Net, app: AppIdx, user_id: &str) {
        if self.cluster.is_some() {
            let _ = self.cluster_send(super::wire::ClusterOut::Terminate { app, user_id: user_id.into() });
        }
        for peer in e.peers() {
            e.send_to_peer(peer, PeerMsg::TerminateUser { app, user_id: user_id.into() });
        }
        self.terminate_local(e, app, user_id);
    }
}

/// The watchlist a sign-in gives (deduplicated, in order), or why it is refused.
fn watchlist_of(given: Option<Result<Vec<String>, ()>>, max: usize) -> Result<Vec<Box<str>>, String> {
    let list = match given {
        None => return Ok(Vec::new()),
        Some(Err(())) => {
            return Err("Connection not authorized: user_data.watchlist must be an array of user ids".into());
        }
        Some(Ok(list)) => list,
    };
    let mut out: Vec<Box<str>> = Vec::with_capacity(list.len().min(max));
    let mut seen = std::collections::HashSet::with_capacity(list.len().min(max));
    for id in list {
        if !names::valid_user_id(&id) {
            return Err(format!(
                "Connection not authorized: {id:?} in user_data.watchlist is not a valid user id"
            ));
        }
        if seen.insert(id.clone()) {
            out.push(id.into());
        }
        if out.len() > max {
            return Err(format!(
                "Connection not authorized: user_data.watchlist has more than the app's max_watchlist_size of {max} user ids"
            ));
        }
    }
    Ok(out)
}
