//! The cores' side of scale-out: what a core hands to the Redis bridge and what it does with
//! the bridge's messages (see `crate::cluster`).

use crate::cluster::{ClusterIn, ClusterOut};
use crate::core::Core;

impl Core {
    /// Hands `msg` to the bridge; gives it back when the ring is full (the caller decides
    /// locally then).
    pub(crate) fn cluster_send(&mut self, msg: ClusterOut) -> Result<(), ClusterOut> {
        match self.cluster.as_mut() {
            Some(tx) => tx.push(msg),
            None => Err(msg),
        }
    }

    /// A message from the bridge.
    pub fn on_cluster(&mut self, msg: ClusterIn) {
        match msg {
            ClusterIn::Publish(p) => {
                self.deliver_local(p.app, &p.channel, &p.frame, p.except, p.cache.as_deref())
            }
            ClusterIn::Joined { token, added, full, members } => {
                self.cluster_joined(token, added, full, members)
            }
            ClusterIn::Left { app, channel, member, removed } => {
                if removed {
                    self.announce_removed(app as u32, &channel, &member);
                }
            }
            ClusterIn::Webhook { app, event } => self.webhook(app as u32, event),
            ClusterIn::Terminate { app, user_id } => {
                // Every core of this node got it from the bridge: close only local ones.
                self.terminate_local(app as u32, &user_id);
            }
            ClusterIn::Ask { from_node, id, app, filter, members } => {
                self.answer_node(from_node, id, app, filter, members)
            }
            ClusterIn::Answered { id, rows } => self.cluster_answered(id, rows),
            ClusterIn::Resync => self.resync(),
        }
    }

    /// Redis is back (or was restarted): register this core's presence owners' members and the
    /// channels it counts as occupied again, without announcing anything.
    fn resync(&mut self) {
        let mut out = Vec::new();
        for app in 0..self.pusher.apps.len() as u32 {
            for (channel, ch) in self.pusher.presence.channels_of(app) {
                for (member, _) in ch.members.values() {
                    out.push(ClusterOut::Rejoin {
                        app: app as u16,
                        channel: channel.into(),
                        member: member.clone(),
                    });
                }
            }
            for (channel, per_core) in &self.pusher.occupancy[app as usize] {
                if per_core.iter().any(|&n| n > 0) {
                    out.push(ClusterOut::Reoccupy { app: app as u16, channel: channel.clone() });
                }
            }
        }
        for msg in out {
            let _ = self.cluster_send(msg);
        }
    }
}
