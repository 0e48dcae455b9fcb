//! The Pusher layer's consistency rules, checked by the fuzzers and tests: channels,
//! subscriptions, memberships, sign-ins, watchlists and counts agree with the connections,
//! presence and watchlist owners agree with the connections' cores, and a server with no
//! connections keeps nothing.

use super::conn_state::flag;
use super::{Net, Pusher};
use crate::core::Core;

impl Pusher {
    /// Panics, saying which rule, if this core's Pusher state disagrees with its connections.
    pub(crate) fn check_invariants(&self, e: &Net) {
        for (id, ch) in self.channels.iter() {
            assert!(!ch.subscribers.is_empty() || ch.pending > 0, "channel {} kept with nobody", ch.name);
            for &idx in &ch.subscribers {
                let (key, conn) =
                    e.conn_at(idx).unwrap_or_else(|| panic!("subscriber {idx} of {} is gone", ch.name));
                assert!(
                    self.is_subscribed(e, key, id),
                    "{key:?} listed in {} without the subscription",
                    ch.name
                );
                assert_eq!(conn.ext.app, ch.app, "the channel's app");
            }
        }
        let mut admitted = vec![0u64; self.connections.len()];
        for key in e.keys() {
            let conn = e.conn(key).expect("listed");
            let more = conn.ext.flags & flag::MORE_SUBS != 0;
            assert_eq!(more, self.more_subs.contains_key(&key.idx), "MORE_SUBS flag of {key:?}");
            let subs = conn
                .ext
                .first_sub
                .into_iter()
                .chain(self.more_subs.get(&key.idx).into_iter().flatten().copied());
            for id in subs {
                let ch = self
                    .channels
                    .get(id)
                    .unwrap_or_else(|| panic!("{key:?} subscribed to a released channel"));
                assert_eq!(ch.app, conn.ext.app);
            }
            if conn.ext.flags & flag::ADMITTED != 0 {
                admitted[conn.ext.app.index()] += 1;
            }
            assert_eq!(
                conn.ext.flags & flag::SIGNED_IN != 0,
                self.signed_in.contains_key(&key.idx),
                "SIGNED_IN of {key:?}"
            );
        }
        assert_eq!(admitted, self.connections, "per-app connection counts");
        for (idx, list) in &self.more_subs {
            assert!(!list.is_empty(), "empty extra subscriptions of {idx}");
        }
        for &(idx, id) in self.memberships.keys() {
            let (key, _) = e.conn_at(idx).unwrap_or_else(|| panic!("membership of gone connection {idx}"));
            assert!(self.is_subscribed(e, key, id), "membership without subscription");
        }
        for (idx, user) in &self.signed_in {
            let (_, conn) = e.conn_at(*idx).expect("signed-in connection alive");
            let users = &self.users[conn.ext.app.index()];
            assert!(users.get(user).is_some_and(|l| l.contains(idx)), "user index lists {idx}");
        }
        let listed: usize = self.users.iter().flat_map(|m| m.values()).map(Vec::len).sum();
        assert_eq!(listed, self.signed_in.len(), "users lists match sign-ins");
        for (idx, list) in &self.watchlists {
            assert!(self.signed_in.contains_key(idx), "watchlist of {idx}, which is not signed in");
            assert!(!list.is_empty(), "an empty watchlist is not kept");
        }
        for (idx, init) in &self.watch_init {
            assert_eq!(init.key.idx, *idx);
            assert!(self.watchlists.contains_key(idx), "initial watchlist state without a watchlist");
        }
        for table in &self.watched {
            for (user, w) in table {
                assert!(
                    !w.sockets.is_empty() || !w.watchers.is_empty() || w.pending > 0,
                    "watched user {user} kept for nothing"
                );
            }
        }
    }

    /// Panics if anything is left although the core has no connection.
    pub(crate) fn check_empty(&self) {
        assert_eq!(self.channels.len(), 0, "channels left");
        assert!(self.memberships.is_empty() && self.signed_in.is_empty() && self.more_subs.is_empty());
        assert!(self.users.iter().all(|m| m.is_empty()), "users left");
        assert_eq!(self.presence.member_count(), 0, "presence members left");
        assert!(self.quota_used.iter().all(|&n| n == 0), "quota still used: {:?}", self.quota_used);
        assert!(self.connections.iter().all(|&n| n == 0), "connections counted");
        assert!(self.occupancy.iter().all(|m| m.is_empty()), "occupancy left");
        assert!(self.joins.is_empty(), "presence joins waiting");
        assert!(self.queries.pending.is_empty(), "queries waiting");
        assert!(self.watched.iter().all(|m| m.is_empty()), "watched users left");
        assert!(self.watchlists.is_empty() && self.watch_init.is_empty(), "watchlists left");
        assert!(self.watch_waits.is_empty(), "watch requests waiting");
        assert!(self.counts.iter().all(|m| m.is_empty()) && self.counts_due.is_empty(), "live counts left");
        assert_eq!(self.deadlines.len(), 0, "authorization deadlines left");
    }
}

/// Panics unless every presence owner's members are exactly the joined connections of the
/// cores (call when no cross-core message is in flight).
pub(crate) fn check_presence_owners(cores: &[Core<Pusher>]) {
    let mut owned = 0;
    for owner in cores {
        for app in owner.s.apps.indexes() {
            for (channel, pc) in owner.s.presence.channels_of(app) {
                for (user, (_, sockets)) in &pc.members {
                    assert!(!sockets.is_empty(), "member {user} of {channel} without sockets");
                    for s in sockets {
                        let core = &cores[s.shard.index()];
                        assert!(core.e.conn(s.key).is_some(), "member {user} of {channel}: connection gone");
                        let id = core
                            .s
                            .channels
                            .lookup(app, channel)
                            .expect("the joiner's core knows the channel");
                        let m = core.s.memberships.get(&(s.key.idx, id)).expect("the joiner's membership");
                        assert_eq!(&*m.id, &**user, "the membership's user");
                        owned += 1;
                    }
                }
            }
        }
    }
    let joined: usize = cores.iter().map(|c| c.s.memberships.len()).sum();
    assert_eq!(owned, joined, "every membership is known to its channel's owner");
}

/// Panics unless every user's owner core lists exactly the connections signed in as the user
/// and exactly the connections watching the user (call when no cross-core message is in
/// flight and no cluster is involved).
pub(crate) fn check_watch_owners(cores: &[Core<Pusher>]) {
    let (mut sockets, mut watchers) = (0, 0);
    for owner in cores {
        for app in owner.s.apps.indexes() {
            for (user, w) in &owner.s.watched[app.index()] {
                assert_eq!(w.online, !w.sockets.is_empty(), "{user}: online while signed in somewhere");
                for s in &w.sockets {
                    let core = &cores[s.shard.index()];
                    assert!(core.e.conn(s.key).is_some(), "signed-in connection of {user} gone");
                    assert_eq!(
                        core.s.signed_in.get(&s.key.idx).map(|u| &**u),
                        Some(&**user),
                        "sign-in of {user}"
                    );
                    sockets += 1;
                }
                for s in &w.watchers {
                    let core = &cores[s.shard.index()];
                    assert!(core.e.conn(s.key).is_some(), "watcher of {user} gone");
                    let list = core.s.watchlists.get(&s.key.idx).expect("the watcher's watchlist");
                    assert!(list.iter().any(|u| **u == **user), "{user} in the watcher's watchlist");
                    watchers += 1;
                }
            }
        }
    }
    let watching: usize = cores.iter().flat_map(|c| c.s.watchlists.values()).map(|l| l.len()).sum();
    assert_eq!(watchers, watching, "every watchlist entry is known to the user's owner");
    let signed_in: usize = cores
        .iter()
        .map(|c| {
            c.s.signed_in
                .keys()
                .filter(|idx| {
                    c.e.conn_at(**idx).is_some_and(|(_, conn)| c.s.app(conn.ext.app).watchlist_events)
                })
                .count()
        })
        .sum();
    assert_eq!(sockets, signed_in, "every sign-in is known to the user's owner");
}
