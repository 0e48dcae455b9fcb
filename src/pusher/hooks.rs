//! Where webhook events are born. Occupancy is counted on each channel's owner core: a core
//! tells the owner how many local subscribers it has whenever that changes between zero and
//! non-zero (or on every change when `subscription_count` webhooks or events are on), and the
//! owner fires `channel_occupied` / `channel_vacated` once for the whole server and hands count
//! changes to the live counts (`counts`).

use serde_json::json;

use super::apps::AppIdx;
use super::names::{self, Kind};
use super::peer::PeerMsg;
use super::wire::{ClusterOut, Hook};
use super::{Net, Pusher, owner_of};
use crate::core::io::CoreId;

impl Pusher {
    /// Queues a webhook event for `app`, if one of its receivers wants it. Never waits: a full
    /// ring drops it.
    pub(crate) fn webhook(&mut self, app: AppIdx, event: serde_json::Value) {
        let name = event["name"].as_str().unwrap_or_default();
        if !self.app(app).wants_webhook(name, event["channel"].as_str()) {
            return;
        }
        let Some(outlet) = self.webhooks.as_mut() else { return };
        if outlet.push(Hook { app, event: event.to_string() }).is_err() {
            self.stats.webhooks_dropped += 1;
        }
    }

    /// This core's subscriber count of `channel` went from `was` to `now`.
    pub(crate) fn subscribers_changed(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        channel: &str,
        was: usize,
        now: usize,
    ) {
        let a = self.app(app);
        let kind = names::classify(channel).kind;
        if kind == Kind::User {
            return;
        }
        let hooks = !a.webhooks.is_empty();
        let counts = kind != Kind::Presence
            && ((hooks && a.subscription_count_webhooks) || a.subscription_count_events);
        if !counts && (!hooks || (was == 0) == (now == 0)) {
            return;
        }
        let owner = owner_of(app, channel, e.settings().cores);
        let (shard, count) = (e.shard(), now as u64);
        if owner == shard {
            self.occupancy(e, app, channel, shard, count);
        } else {
            e.send_to_peer(owner, PeerMsg::Occupancy { app, channel: channel.into(), shard, count });
        }
    }

    /// On the owner core: core `shard` now has `count` subscribers of `channel`.
    pub(crate) fn occupancy(&mut self, e: &mut Net, app: AppIdx, channel: &str, shard: CoreId, count: u64) {
        let cores = usize::from(e.settings().cores.max(1));
        let per_core = self.occupancy[app.index()].entry(channel.into()).or_insert_with(|| vec![0; cores]);
        let before: u64 = per_core.iter().sum();
        per_core[shard.index()] = count;
        let after: u64 = per_core.iter().sum();
        if after == 0 {
            self.occupancy[app.index()].remove(channel);
        }
        let a = self.app(app);
        if (before == 0) != (after == 0) && !a.webhooks.is_empty() {
            let occupied = after > 0;
            // With a cluster, Redis says whether this is the first (last) node.
            let msg = ClusterOut::Occupied { shard: e.shard(), app, channel: channel.into(), occupied };
            if self.cluster.is_none() || self.cluster_send(msg).is_err() {
                let name = if occupied { "channel_occupied" } else { "channel_vacated" };
                self.webhook(app, json!({"name": name, "channel": channel}));
            }
        }
        let a = self.app(app);
        if before == after || names::classify(channel).kind == Kind::Presence {
            return;
        }
        let live = a.subscription_count_events;
        if a.subscription_count_webhooks {
            self.webhook(
                app,
                json!({"name": "subscription_count", "channel": channel, "subscription_count": after}),
            );
        }
        if live {
            self.count_changed(e, app, channel, after);
        }
    }
}
