//! The cores' side of scale-out: what a core hands to the Redis bridge and what it does with the
//! bridge's messages (the bridge itself is `crate::cluster`).

use super::wire::{ClusterIn, ClusterOut};
use super::{Net, Pusher};

impl Pusher {
    /// Hands `msg` to the bridge; gives it back when there is no bridge or its ring is full
    /// (the caller decides locally then).
    pub(crate) fn cluster_send(&mut self, msg: ClusterOut) -> Result<(), ClusterOut> {
        match self.cluster.as_mut() {
            Some(outlet) => outlet.push(msg),
            None => Err(msg),
        }
    }

    /// A message from the bridge.
    pub(crate) fn on_cluster(&mut self, e: &mut Net, msg: ClusterIn) {
        match msg {
            ClusterIn::Publish(p) => self.deliver_remote(e, &p),
            ClusterIn::Joined { token, added, full, members } => {
                self.cluster_joined(e, token, added, full, members)
            }
            ClusterIn::Left { app, channel, member, removed } => {
                if removed {
                    self.announce_removed(e, app, &channel, &member);
                }
            }
            ClusterIn::Webhook { app, event } => self.webhook(app, event),
            // Every core of this node got it from the bridge: close only local ones.
            ClusterIn::Terminate { app, user_id } => self.terminate_local(e, app, &user_id),
            ClusterIn::Ask { from_node, id, app, filter, members } => {
                self.answer_node(e, from_node, id, app, filter, members)
            }
            ClusterIn::Answered { id, rows } => self.cluster_answered(e, id, rows),
            ClusterIn::Resync => self.resync(e),
            ClusterIn::BusUp => self.bus_up(e),
            ClusterIn::UserOnline { app, user, online, seq } => self.learn_online(e, app, &user, online, seq),
            ClusterIn::UserStatus { app, users, answer } => self.learn_status(e, app, &users, answer),
        }
    }

    /// The bridge (re)subscribed to the bus: what was published while it was not subscribed
    /// is lost, so ask again about watched users and report live counts again.
    fn bus_up(&mut self, e: &Net) {
        let mut out = self.reask_watched(e.shard());
        out.extend(self.recount());
        for msg in out {
            if self.cluster_send(msg).is_err() {
                self.stats.cluster_dropped += 1;
            }
        }
    }

    /// Redis is back (or was restarted): register this core's presence owners' members and the
    /// channels it counts as occupied again, without announcing anything; report live counts
    /// and signed-in users again.
    fn resync(&mut self, e: &Net) {
        let mut out = Vec::new();
        for app in self.apps.indexes() {
            for (channel, ch) in self.presence.channels_of(app) {
                for (member, _) in ch.members.values() {
                    out.push(ClusterOut::Rejoin { app, channel: channel.into(), member: member.clone() });
                }
            }
            for (channel, per_core) in &self.occupancy[app.index()] {
                if per_core.iter().any(|&n| n > 0) {
                    out.push(ClusterOut::Reoccupy { app, channel: channel.clone() });
                }
            }
        }
        out.extend(self.reregister_users(e.shard()));
        out.extend(self.reask_watched(e.shard()));
        out.extend(self.recount());
        for msg in out {
            if self.cluster_send(msg).is_err() {
                self.stats.cluster_dropped += 1;
            }
        }
    }
}
