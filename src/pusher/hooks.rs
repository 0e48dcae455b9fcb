//! Where webhook events are born. Occupancy is counted on each channel's owner core: a core
//! tells the owner how many local subscribers it has whenever that changes between zero and
//! non-zero (or on every change when `subscription_count` webhooks are on), and the owner fires
//! `channel_occupied` / `channel_vacated` once for the whole server.

use serde_json::json;

use super::names::{self, Kind};
use super::owner_of;
use super::peer::PeerMsg;
use crate::core::Core;

impl Core {
    /// Queues a webhook event for `app`, if it has webhooks. Never waits: a full ring drops it.
    pub(crate) fn webhook(&mut self, app: u32, event: serde_json::Value) {
        if self.pusher.apps[app as usize].webhooks.is_empty() {
            return;
        }
        let Some(sink) = self.webhooks.as_mut() else { return };
        let hook = crate::webhooks::Hook { app: app as u16, event: event.to_string() };
        if sink.push(hook).is_err() {
            self.stats.webhooks_dropped += 1;
        }
    }

    /// This core's subscriber count of `channel` went from `was` to `now`.
    pub(crate) fn subscribers_changed(&mut self, app: u32, channel: &str, was: usize, now: usize) {
        let a = &self.pusher.apps[app as usize];
        if a.webhooks.is_empty() || names::classify(channel).kind == Kind::User {
            return;
        }
        let counts = a.subscription_count_webhooks && names::classify(channel).kind != Kind::Presence;
        if !counts && (was == 0) == (now == 0) {
            return;
        }
        let owner = owner_of(app, channel, self.settings.shards);
        let (shard, count) = (self.shard, now as u64);
        if owner == self.shard {
            self.occupancy(app, channel, shard, count);
        } else {
            self.send_to_peer(owner, PeerMsg::Occupancy { app, channel: channel.into(), shard, count });
        }
    }

    /// On the owner core: core `shard` now has `count` subscribers of `channel`.
    pub(crate) fn occupancy(&mut self, app: u32, channel: &str, shard: u32, count: u64) {
        let shards = self.settings.shards as usize;
        let per_core =
            self.pusher.occupancy[app as usize].entry(channel.into()).or_insert_with(|| vec![0; shards]);
        let before: u64 = per_core.iter().sum();
        per_core[shard as usize] = count;
        let after: u64 = per_core.iter().sum();
        if after == 0 {
            self.pusher.occupancy[app as usize].remove(channel);
        }
        if (before == 0) != (after == 0) {
            let occupied = after > 0;
            // With a cluster, Redis says whether this is the first (last) node.
            let msg = crate::cluster::ClusterOut::Occupied {
                shard: self.shard,
                app: app as u16,
                channel: channel.into(),
                occupied,
            };
            if self.cluster.is_none() || self.cluster_send(msg).is_err() {
                let name = if occupied { "channel_occupied" } else { "channel_vacated" };
                self.webhook(app, json!({"name": name, "channel": channel}));
            }
        }
        if before != after
            && self.pusher.apps[app as usize].subscription_count_webhooks
            && names::classify(channel).kind != Kind::Presence
        {
            self.webhook(
                app,
                json!({"name": "subscription_count", "channel": channel, "subscription_count": after}),
            );
        }
    }
}
