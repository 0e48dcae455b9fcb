//! Presence membership, kept on each presence channel's owner core: members keyed by user id,
//! each with the connections (on any core) it holds in the channel. `member_added` is due when a
//! user's first connection joins, `member_removed` when its last one leaves. Tracking sockets,
//! not just counts, makes a leave for a join that was refused (or never arrived) harmless.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::apps::AppIdx;
use super::messages::Member;
use super::socket_id::SocketRef;

pub(crate) struct PresenceChannel {
    pub(crate) members: HashMap<Box<str>, (Member, Vec<SocketRef>), FxBuildHasher>,
}

/// What a join did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The user's first connection: announce `member_added`.
    NewMember,
    /// Another connection of a present user: no event.
    AnotherConnection,
    /// The channel is full: refuse.
    Full,
}

#[derive(Default)]
pub(crate) struct Presence {
    /// Per app: channel name → membership.
    channels: Vec<HashMap<Box<str>, PresenceChannel, FxBuildHasher>>,
}

impl Presence {
    pub(crate) fn join(
        &mut self,
        app: AppIdx,
        channel: &str,
        socket: SocketRef,
        member: Member,
        max_members: usize,
    ) -> Joined {
        if self.channels.len() <= app.index() {
            self.channels.resize_with(app.index() + 1, HashMap::default);
        }
        let chans = &mut self.channels[app.index()];
        let ch =
            chans.entry(channel.into()).or_insert_with(|| PresenceChannel { members: HashMap::default() });
        if let Some((_, sockets)) = ch.members.get_mut(member.id.as_str()) {
            if !sockets.contains(&socket) {
                sockets.push(socket);
            }
            return Joined::AnotherConnection;
        }
        if ch.members.len() >= max_members {
            if ch.members.is_empty() {
                chans.remove(channel);
            }
            return Joined::Full;
        }
        ch.members.insert(member.id.clone().into(), (member, vec![socket]));
        Joined::NewMember
    }

    /// Connection `socket` of `user_id` left; returns the member if it was the user's last.
    pub(crate) fn leave(
        &mut self,
        app: AppIdx,
        channel: &str,
        user_id: &str,
        socket: SocketRef,
    ) -> Option<Member> {
        let chans = self.channels.get_mut(app.index())?;
        let ch = chans.get_mut(channel)?;
        let (_, sockets) = ch.members.get_mut(user_id)?;
        let before = sockets.len();
        sockets.retain(|s| *s != socket);
        if sockets.len() == before || !sockets.is_empty() {
            return None;
        }
        let (member, _) = ch.members.remove(user_id).expect("present");
        if ch.members.is_empty() {
            chans.remove(channel);
        }
        Some(member)
    }

    pub(crate) fn channel(&self, app: AppIdx, channel: &str) -> Option<&PresenceChannel> {
        self.channels.get(app.index())?.get(channel)
    }

    /// Every presence channel of `app` this core owns.
    pub(crate) fn channels_of(&self, app: AppIdx) -> impl Iterator<Item = (&str, &PresenceChannel)> {
        self.channels.get(app.index()).into_iter().flat_map(|m| m.iter().map(|(k, v)| (&**k, v)))
    }

    /// Distinct members over every channel this core owns.
    pub(crate) fn member_count(&self) -> usize {
        self.channels.iter().flat_map(|m| m.values()).map(|c| c.members.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::core::conn::ConnKey;
    use crate::core::io::CoreId;
    use crate::pusher::socket_id::NodeId;

    const A: AppIdx = AppIdx(0);

    fn m(id: &str) -> Member {
        Member { id: id.into(), id_json: format!("{id:?}"), info: None }
    }

    fn s(shard: u16, idx: u32) -> SocketRef {
        SocketRef { node: NodeId(1), shard: CoreId(shard), key: ConnKey { idx, generation: 1 } }
    }

    #[test]
    fn counts_connections_per_user_across_cores() {
        let mut p = Presence::default();
        assert_eq!(p.join(A, "presence-a", s(0, 1), m("u1"), 100), Joined::NewMember);
        assert_eq!(p.join(A, "presence-a", s(1, 1), m("u1"), 100), Joined::AnotherConnection);
        assert_eq!(p.join(A, "presence-a", s(0, 2), m("u2"), 100), Joined::NewMember);
        assert_eq!(p.leave(A, "presence-a", "u1", s(0, 1)), None);
        assert_eq!(p.leave(A, "presence-a", "u1", s(1, 1)).map(|m| m.id), Some("u1".to_string()));
        assert_eq!(p.channel(A, "presence-a").unwrap().members.len(), 1);
        assert!(p.leave(A, "presence-a", "u2", s(0, 2)).is_some());
        assert!(p.channel(A, "presence-a").is_none());
    }

    #[test]
    fn member_limit_counts_users_not_connections() {
        let mut p = Presence::default();
        assert_eq!(p.join(A, "presence-a", s(0, 1), m("u1"), 1), Joined::NewMember);
        assert_eq!(p.join(A, "presence-a", s(0, 2), m("u1"), 1), Joined::AnotherConnection);
        assert_eq!(p.join(A, "presence-a", s(0, 3), m("u2"), 1), Joined::Full);
        assert_eq!(p.member_count(), 1);
    }

    #[test]
    fn leave_of_a_refused_join_changes_nothing() {
        let mut p = Presence::default();
        p.join(A, "presence-a", s(0, 1), m("u1"), 1);
        assert_eq!(p.join(A, "presence-a", s(0, 9), m("u1"), 1), Joined::AnotherConnection);
        assert_eq!(p.leave(A, "presence-a", "u1", s(1, 5)), None, "an unknown socket");
        assert_eq!(p.leave(A, "presence-a", "u1", s(0, 9)), None);
        assert!(p.leave(A, "presence-a", "u1", s(0, 1)).is_some());
    }
}
