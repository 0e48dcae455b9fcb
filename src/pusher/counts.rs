//! Live subscription counts (`subscription_count_events`): subscribers of a non-presence
//! channel receive `pusher_internal:subscription_count` with the channel's subscriptions on all
//! cores (and nodes).
//!
//! The channel's owner core already adds up the cores' subscriber counts (`hooks::occupancy`).
//! A change is published at once when the channel's last count went out at least
//! `subscription_count_interval` seconds ago; otherwise it waits for that second (later changes
//! in between are folded in), so a large channel's churn costs its subscribers at most one
//! event per interval. With a cluster the owner reports its node's count to Redis instead, and
//! Redis publishes the cluster's total on the bus to every node (one ordered stream, so every
//! subscriber sees the counts in the same order); each node's owner reports at most once per
//! interval.

use super::apps::AppIdx;
use super::messages;
use super::wire::ClusterOut;
use super::{Net, Pusher};

/// A channel's live count on its owner core.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CountState {
    /// Subscriptions on this node.
    pub(crate) node: u64,
    /// Core second the last count went out.
    pub(crate) sent_at: Option<u32>,
    /// A change waits for the interval to pass.
    pub(crate) due: bool,
    /// Listed in `counts_due` (for a waiting change, or to be forgotten once empty).
    pub(crate) queued: bool,
}

impl Pusher {
    /// On the owner core: the channel's subscriptions on this node are now `node`.
    pub(crate) fn count_changed(&mut self, e: &mut Net, app: AppIdx, channel: &str, node: u64) {
        let interval = self.app(app).subscription_count_interval;
        let now = e.now();
        let table = &mut self.counts[app.index()];
        if !table.contains_key(channel) {
            table.insert(channel.into(), CountState::default());
        }
        let st = table.get_mut(channel).expect("present");
        st.node = node;
        if st.due {
            return;
        }
        if st.sent_at.is_none_or(|t| now >= t.saturating_add(interval)) {
            self.send_count(e, app, channel);
        } else {
            st.due = true;
            self.schedule_count(app, channel);
        }
    }

    fn schedule_count(&mut self, app: AppIdx, channel: &str) {
        if let Some(st) = self.counts[app.index()].get_mut(channel)
            && !st.queued
        {
            st.queued = true;
            self.counts_due.push((app, channel.into()));
        }
    }

    /// Publishes the channel's count (or, with a cluster, reports this node's to Redis).
    fn send_count(&mut self, e: &mut Net, app: AppIdx, channel: &str) {
        let now = e.now();
        let Some(st) = self.counts[app.index()].get_mut(channel) else { return };
        st.sent_at = Some(now);
        st.due = false;
        let node = st.node;
        // Looked at again after the interval: to be forgotten if the channel stays empty here.
        self.schedule_count(app, channel);
        self.stats.subscription_count_events += 1;
        if self.cluster.is_some() {
            let msg = ClusterOut::Count { app, channel: channel.into(), count: node };
            if self.cluster_send(msg).is_ok() {
                return;
            }
            // The bridge is swamped: this node's subscribers get this node's count.
        }
        if node > 0 {
            self.publish(e, app, channel, messages::subscription_count(channel, node), None, None);
        }
    }

    /// Second by second: sends the counts whose interval passed, and forgets channels that
    /// stayed empty here for an interval.
    pub(crate) fn flush_counts(&mut self, e: &mut Net) {
        if self.counts_due.is_empty() {
            return;
        }
        let now = e.now();
        for (app, channel) in std::mem::take(&mut self.counts_due) {
            let interval = self.app(app).subscription_count_interval;
            let Some(st) = self.counts[app.index()].get_mut(&channel) else { continue };
            st.queued = false;
            let st = *st;
            if st.sent_at.is_some_and(|t| now < t.saturating_add(interval)) {
                self.schedule_count(app, &channel);
            } else if st.due {
                self.send_count(e, app, &channel);
            } else if st.node == 0 {
                self.counts[app.index()].remove(&channel);
            }
            // Otherwise the channel is quiet: its next change goes out at once.
        }
    }

    /// After Redis came back: every channel's count on this node, to report again.
    pub(crate) fn recount(&self) -> Vec<ClusterOut> {
        let mut out = Vec::new();
        for app in self.apps.indexes() {
            for (channel, st) in &self.counts[app.index()] {
                if st.node > 0 {
                    out.push(ClusterOut::Count { app, channel: channel.clone(), count: st.node });
                }
            }
        }
        out
    }
}
