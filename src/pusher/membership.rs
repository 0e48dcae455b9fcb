//! Presence membership flows: a join or leave goes to the channel's owner core (and, in a
//! cluster, from there to Redis), which decides whether it is a new or departed member,
//! announces it once, and answers the joiner's core.

use bytes::Bytes;

use super::apps::AppIdx;
use super::messages::{self, Member};
use super::names;
use super::peer::PeerMsg;
use super::presence::Joined;
use super::socket_id::SocketRef;
use super::wire::ClusterOut;
use super::{Net, PendingJoin, Pusher, QUESTION_TIMEOUT};
use crate::core::conn::ConnKey;

impl Pusher {
    /// On the owner core: a connection joins a presence channel. Without a cluster this core
    /// decides; with one, the join goes to Redis first (`cluster_joined` continues).
    pub(crate) fn presence_join(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        channel: &str,
        from: SocketRef,
        member: Member,
    ) {
        let max = self.app(app).max_presence_members;
        let joined = self.presence.join(app, channel, from, member.clone(), max);
        if joined != Joined::Full && self.cluster.is_some() {
            let token = self.next_token;
            self.next_token += 1;
            let node_new = joined == Joined::NewMember;
            let deadline = e.now().saturating_add(QUESTION_TIMEOUT);
            let pending = PendingJoin {
                app,
                channel: channel.into(),
                from,
                member: member.clone(),
                node_new,
                deadline,
            };
            self.joins.insert(token, pending);
            let msg = ClusterOut::Join {
                shard: e.shard(),
                token,
                app,
                channel: channel.into(),
                member,
                node_new,
                max,
            };
            if self.cluster_send(msg).is_err() {
                // The bridge is swamped: decide on this node alone.
                self.cluster_joined(e, token, node_new, false, None);
            }
            return;
        }
        let (added, full) = (joined == Joined::NewMember, joined == Joined::Full);
        self.finish_join(e, app, channel, from, member, added, full, None);
    }

    /// The cluster's answer to a presence join sent to the bridge (or, past its deadline,
    /// this node's own decision).
    pub(crate) fn cluster_joined(
        &mut self,
        e: &mut Net,
        token: u64,
        added: bool,
        full: bool,
        members: Option<Vec<Member>>,
    ) {
        let Some(p) = self.joins.remove(&token) else { return };
        if full {
            // Refused cluster-wide: undo this node's join.
            self.presence.leave(p.app, &p.channel, &p.member.id, p.from);
        }
        self.finish_join(e, p.app, &p.channel, p.from, p.member, added, full, members);
    }

    /// Joins the cluster did not answer in time are decided on this node alone.
    pub(crate) fn expire_joins(&mut self, e: &mut Net) {
        let now = e.now();
        let late: Vec<(u64, bool)> =
            self.joins.iter().filter(|(_, j)| j.deadline <= now).map(|(&t, j)| (t, j.node_new)).collect();
        for (token, node_new) in late {
            self.stats.questions_expired += 1;
            self.cluster_joined(e, token, node_new, false, None);
        }
    }

    /// Announces a new member (if `added`) and answers the joiner with the member list (the
    /// cluster's when given, else this node's) or, when `full`, an error.
    #[allow(clippy::too_many_arguments)]
    fn finish_join(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        channel: &str,
        from: SocketRef,
        member: Member,
        added: bool,
        full: bool,
        members: Option<Vec<Member>>,
    ) {
        let max = self.app(app).max_presence_members;
        let (frame, ok) = if full {
            let msg = format!("The presence channel is full ({max} members)");
            (messages::subscription_error(channel, "LimitReached", &msg, 4100), false)
        } else {
            if added {
                // Announced before the joiner's confirmation leaves this core, so every core
                // sees member_added before the joiner is one of its subscribers.
                self.publish(e, app, channel, messages::member_added(channel, &member), Some(from), None);
                self.webhook(
                    app,
                    serde_json::json!({"name": "member_added", "channel": channel, "user_id": member.id}),
                );
            }
            let data = match &members {
                Some(list) => messages::presence_data(list.iter()),
                None => {
                    let ch = self.presence.channel(app, channel);
                    messages::presence_data(ch.into_iter().flat_map(|c| c.members.values().map(|(m, _)| m)))
                }
            };
            (messages::subscription_succeeded(channel, &data), true)
        };
        let msg = PeerMsg::PresenceJoined { to: from.key, app, channel: channel.into(), frame, ok };
        self.reply_to(e, from, msg);
    }

    /// On the owner core: a connection left a presence channel.
    pub(crate) fn presence_leave(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        channel: &str,
        user_id: &str,
        from: SocketRef,
    ) {
        let Some(member) = self.presence.leave(app, channel, user_id, from) else { return };
        if self.cluster.is_some() {
            let msg = ClusterOut::Leave { shard: e.shard(), app, channel: channel.into(), member };
            if let Err(ClusterOut::Leave { member, .. }) = self.cluster_send(msg) {
                self.announce_removed(e, app, channel, &member);
            }
            return;
        }
        self.announce_removed(e, app, channel, &member);
    }

    /// `member_removed` to every subscriber, and its webhook.
    pub(crate) fn announce_removed(&mut self, e: &mut Net, app: AppIdx, channel: &str, member: &Member) {
        self.publish(e, app, channel, messages::member_removed(channel, &member.id_json), None, None);
        self.webhook(
            app,
            serde_json::json!({"name": "member_removed", "channel": channel, "user_id": member.id}),
        );
    }

    /// On the joiner's core: the owner's answer to a presence join.
    pub(crate) fn presence_joined(
        &mut self,
        e: &mut Net,
        to: ConnKey,
        app: AppIdx,
        channel: &str,
        frame: Bytes,
        ok: bool,
    ) {
        let Some(id) = self.channels.lookup(app, channel) else { return };
        if let Some(ch) = self.channels.get_mut(id) {
            ch.pending = ch.pending.saturating_sub(1);
        }
        let still_joining = self.is_subscribed(e, to, id)
            && self.memberships.contains_key(&(to.idx, id))
            && !self.channels.get(id).is_some_and(|c| c.subscribers.contains(&to.idx));
        if still_joining {
            if ok {
                let subs = &mut self.channels.get_mut(id).expect("looked up").subscribers;
                subs.insert(to.idx);
                let now = subs.len();
                self.subscribers_changed(e, app, channel, now - 1, now);
                e.send(to, frame);
                self.authorized(e, to);
                if names::classify(channel).cache {
                    self.send_cached(e, to, app, channel);
                }
            } else {
                self.remove_sub(e, to, id);
                self.memberships.remove(&(to.idx, id));
                e.send(to, frame);
            }
        }
        self.channels.release_if_unused(id);
    }
}
