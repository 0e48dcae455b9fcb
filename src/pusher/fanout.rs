//! Publishing: an event encoded once is delivered to this core's subscribers and handed to
//! every other core over the mesh; presence membership on owner cores; quota reservations;
//! messages from other cores.

use std::sync::Arc;

use bytes::Bytes;

use super::messages::{self, Member};
use super::names::{self, Kind};
use super::peer::{PeerMsg, Publish};
use super::presence::Joined;
use super::socket_id::SocketRef;
use super::{Cached, owner_of};
use crate::core::conn::ConnKey;
use crate::core::{Core, Pushed, push_frame};

impl Core {
    /// Delivers `frame` to every subscriber of `channel` on every core, except `except`. For
    /// cache channels, `cache` is the event's `data`, and the event becomes the channel's last.
    pub fn publish(
        &mut self,
        app: u32,
        channel: &str,
        frame: Bytes,
        except: Option<SocketRef>,
        cache: Option<Box<str>>,
    ) {
        self.stats.published += 1;
        let shards = self.settings.shards;
        if shards > 1 || self.cluster.is_some() {
            // One shared message for every other core and for the other nodes.
            let msg = Arc::new(Publish { app, channel: channel.into(), frame, except, cache });
            if self.cluster.is_some()
                && self.cluster_send(crate::cluster::ClusterOut::Publish(msg.clone())).is_err()
            {
                self.stats.cluster_dropped += 1;
            }
            let me = self.shard;
            for peer in (0..shards).filter(|&p| p != me) {
                if self.peer_backlogged(peer) {
                    self.stats.ring_overflows += 1;
                    continue;
                }
                self.send_to_peer(peer, PeerMsg::Publish(msg.clone()));
            }
            return self.deliver_local(app, channel, &msg.frame, except, msg.cache.as_deref());
        }
        self.deliver_local(app, channel, &frame, except, cache.as_deref());
    }

    /// Writes `frame` to this core's subscribers of `channel` (for `#server-to-user-{id}`: to
    /// the connections signed in as `id`).
    pub(crate) fn deliver_local(
        &mut self,
        app: u32,
        channel: &str,
        frame: &Bytes,
        except: Option<SocketRef>,
        cache: Option<&str>,
    ) {
        if let Some(data) = cache {
            let at = self.now;
            let cached = Cached { frame: frame.clone(), data: data.into(), at };
            self.pusher.cache[app as usize].insert(channel.into(), cached);
        }
        let skip = except.filter(|s| s.node == self.settings.node && s.shard == self.shard).map(|s| s.key);
        let mut over_budget: Vec<ConnKey> = Vec::new();
        let budget = self.settings.max_outbound_bytes;
        let Core { conns, io, stats, pusher, .. } = self;
        let mut deliver = |idx: u32| {
            let Some(conn) = conns.get_mut(idx as usize) else { return };
            let key = ConnKey { idx, generation: conn.generation };
            if skip == Some(key) {
                return;
            }
            stats.deliveries += 1;
            if let Pushed::Queued(q) = push_frame(conn, &**io, stats, frame)
                && q > budget
            {
                over_budget.push(key);
            }
        };
        if names::classify(channel).kind == Kind::User {
            let user = &channel[names::USER_PREFIX.len()..];
            if let Some(conns) = pusher.users[app as usize].get(user) {
                conns.iter().copied().for_each(&mut deliver);
            }
        } else if let Some(id) = pusher.channels.lookup(app, channel) {
            let ch = pusher.channels.get(id).expect("looked up");
            ch.subscribers.iter().copied().for_each(&mut deliver);
        }
        for key in over_budget {
            self.over_budget(key);
        }
    }

    /// A message from another core.
    pub fn on_peer(&mut self, msg: PeerMsg) {
        match msg {
            PeerMsg::Publish(p) => {
                self.deliver_local(p.app, &p.channel, &p.frame, p.except, p.cache.as_deref())
            }
            PeerMsg::PresenceJoin { app, channel, from, member } => {
                self.presence_join(app, &channel, from, member)
            }
            PeerMsg::PresenceJoined { to, app, channel, frame, ok } => {
                self.presence_joined(to, app, &channel, frame, ok)
            }
            PeerMsg::PresenceLeave { app, channel, user_id, from } => {
                self.presence_leave(app, &channel, &user_id, from)
            }
            PeerMsg::TerminateUser { app, user_id } => self.terminate_local(app, &user_id),
            PeerMsg::AppReserve { app, from } => {
                let granted = self.quota_reserve(app);
                self.reply_to(from, PeerMsg::AppReserved { to: from.key, app, granted });
            }
            PeerMsg::AppReserved { to, app, granted } => self.quota_answer(to, app, granted),
            PeerMsg::AppRelease { app } => self.quota_release(app),
            PeerMsg::Ask { id, from, question } => {
                let answer = self.answer(&question);
                self.send_to_peer(from, PeerMsg::Answered { id, answer });
            }
            PeerMsg::Answered { id, answer } => self.on_answer(id, answer),
            PeerMsg::Occupancy { app, channel, shard, count } => self.occupancy(app, &channel, shard, count),
        }
    }

    /// Sends a reply to the core of `to` (handled at once when that is this core).
    fn reply_to(&mut self, to: SocketRef, msg: PeerMsg) {
        if to.shard == self.shard {
            self.on_peer(msg);
        } else {
            self.send_to_peer(to.shard, msg);
        }
    }

    /// On the owner core: a connection joins a presence channel. Without a cluster this core
    /// decides; with one, the user's first connection on this node (or any join, for the member
    /// list) goes to Redis first (`cluster_joined` continues).
    pub(crate) fn presence_join(&mut self, app: u32, channel: &str, from: SocketRef, member: Member) {
        let max = self.pusher.apps[app as usize].max_presence_members;
        let joined = self.pusher.presence.join(app, channel, from, member.clone(), max);
        if joined != Joined::Full && self.cluster.is_some() {
            let token = self.pusher.next_token;
            self.pusher.next_token += 1;
            let node_new = joined == Joined::NewMember;
            self.pusher.joins.insert(
                token,
                crate::pusher::PendingJoin { app, channel: channel.into(), from, member: member.clone() },
            );
            let msg = crate::cluster::ClusterOut::Join {
                shard: self.shard,
                token,
                app: app as u16,
                channel: channel.into(),
                member,
                node_new,
                max,
            };
            if self.cluster_send(msg).is_err() {
                // The bridge is swamped: decide on this node alone.
                self.cluster_joined(token, node_new, false, None);
            }
            return;
        }
        self.finish_join(
            app,
            channel,
            from,
            member,
            joined == Joined::NewMember,
            joined == Joined::Full,
            None,
        );
    }

    /// The cluster's answer to a presence join sent to the bridge.
    pub(crate) fn cluster_joined(
        &mut self,
        token: u64,
        added: bool,
        full: bool,
        members: Option<Vec<Member>>,
    ) {
        let Some(p) = self.pusher.joins.remove(&token) else { return };
        if full {
            // Refused cluster-wide: undo this node's join.
            self.pusher.presence.leave(p.app, &p.channel, &p.member.id, p.from);
        }
        self.finish_join(p.app, &p.channel, p.from, p.member, added, full, members);
    }

    /// Announces a new member (if `added`) and answers the joiner with the member list (the
    /// cluster's when given, else this node's) or, when `full`, an error.
    #[allow(clippy::too_many_arguments)]
    fn finish_join(
        &mut self,
        app: u32,
        channel: &str,
        from: SocketRef,
        member: Member,
        added: bool,
        full: bool,
        members: Option<Vec<Member>>,
    ) {
        let max = self.pusher.apps[app as usize].max_presence_members;
        let (frame, ok) = if full {
            let msg = format!("The presence channel is full ({max} members)");
            (messages::subscription_error(channel, "LimitReached", &msg, 4100), false)
        } else {
            if added {
                // Announced before the joiner's confirmation leaves this core, so every core
                // sees member_added before the joiner is one of its subscribers.
                self.publish(app, channel, messages::member_added(channel, &member), Some(from), None);
                self.webhook(
                    app,
                    serde_json::json!({"name": "member_added", "channel": channel, "user_id": member.id}),
                );
            }
            let data = match &members {
                Some(list) => messages::presence_data(list.iter()),
                None => {
                    let ch = self.pusher.presence.channel(app, channel);
                    messages::presence_data(ch.into_iter().flat_map(|c| c.members.values().map(|(m, _)| m)))
                }
            };
            (messages::subscription_succeeded(channel, &data), true)
        };
        self.reply_to(
            from,
            PeerMsg::PresenceJoined { to: from.key, app, channel: channel.into(), frame, ok },
        );
    }

    /// On the owner core: a connection left a presence channel.
    pub(crate) fn presence_leave(&mut self, app: u32, channel: &str, user_id: &str, from: SocketRef) {
        let Some(member) = self.pusher.presence.leave(app, channel, user_id, from) else { return };
        if self.cluster.is_some() {
            let msg = crate::cluster::ClusterOut::Leave {
                shard: self.shard,
                app: app as u16,
                channel: channel.into(),
                member,
            };
            if let Err(crate::cluster::ClusterOut::Leave { member, .. }) = self.cluster_send(msg) {
                self.announce_removed(app, channel, &member);
            }
            return;
        }
        self.announce_removed(app, channel, &member);
    }

    /// `member_removed` to every subscriber, and its webhook.
    pub(crate) fn announce_removed(&mut self, app: u32, channel: &str, member: &Member) {
        self.publish(app, channel, messages::member_removed(channel, &member.id_json), None, None);
        self.webhook(
            app,
            serde_json::json!({"name": "member_removed", "channel": channel, "user_id": member.id}),
        );
    }

    /// On the joiner's core: the owner's answer to a presence join.
    fn presence_joined(&mut self, to: ConnKey, app: u32, channel: &str, frame: Bytes, ok: bool) {
        let Some(id) = self.pusher.channels.lookup(app, channel) else { return };
        if let Some(ch) = self.pusher.channels.get_mut(id) {
            ch.pending = ch.pending.saturating_sub(1);
        }
        let still_joining = self.conn(to).is_some_and(|c| c.subs.contains(id))
            && self.pusher.memberships.contains_key(&(to.idx, id))
            && !self.pusher.channels.get(id).is_some_and(|c| c.subscribers.contains(&to.idx));
        if still_joining {
            if ok {
                let subs = &mut self.pusher.channels.get_mut(id).expect("looked up").subscribers;
                subs.insert(to.idx);
                let now = subs.len();
                self.subscribers_changed(app, channel, now - 1, now);
                self.send(to, frame);
                if names::classify(channel).cache {
                    self.send_cached(to, app, channel);
                }
            } else {
                if let Some(conn) = self.conn_mut(to) {
                    conn.subs.remove(id);
                }
                self.pusher.memberships.remove(&(to.idx, id));
                self.send(to, frame);
            }
        }
        self.pusher.channels.release_if_unused(id);
    }

    /// Closes this core's connections signed in as `user_id` (4009).
    pub(crate) fn terminate_local(&mut self, app: u32, user_id: &str) {
        let Some(conns) = self.pusher.users[app as usize].get(user_id).cloned() else { return };
        for idx in conns {
            let Some(conn) = self.conns.get(idx as usize) else { continue };
            let key = ConnKey { idx, generation: conn.generation };
            self.pusher_fail(key, 4009, "You got disconnected by the app.");
        }
    }

    /// Closes every connection signed in as `user_id`, on every core (and node).
    pub fn terminate_user(&mut self, app: u32, user_id: &str) {
        if self.cluster.is_some() {
            let _ = self.cluster_send(crate::cluster::ClusterOut::Terminate {
                app: app as u16,
                user_id: user_id.into(),
            });
        }
        let me = self.shard;
        for peer in (0..self.settings.shards).filter(|&p| p != me) {
            self.send_to_peer(peer, PeerMsg::TerminateUser { app, user_id: user_id.into() });
        }
        self.terminate_local(app, user_id);
    }

    /// On the app's owner core: takes one connection from the app's quota.
    pub(crate) fn quota_reserve(&mut self, app: u32) -> bool {
        let max = self.pusher.apps[app as usize].max_connections;
        let used = &mut self.pusher.quota_used[app as usize];
        if *used >= max {
            return false;
        }
        *used += 1;
        true
    }

    /// Gives one connection back to the app's quota (on its owner core).
    pub(crate) fn quota_release(&mut self, app: u32) {
        let owner = owner_of(app, "", self.settings.shards);
        if owner == self.shard {
            let used = &mut self.pusher.quota_used[app as usize];
            *used = used.saturating_sub(1);
        } else {
            self.send_to_peer(owner, PeerMsg::AppRelease { app });
        }
    }
}
