//! The Pusher layer's per-core counters, summed across cores at scrape time.

use std::collections::BTreeMap;

/// Counters of one core's Pusher layer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    /// HTTP API requests by response status.
    pub(crate) api_requests: BTreeMap<u16, u64>,
    /// Events published from this core (HTTP API, client events, presence events).
    pub(crate) published: u64,
    /// Frames queued for subscribers on this core.
    pub(crate) deliveries: u64,
    /// Publishes not handed to a peer core because its queue was over its limit.
    pub(crate) ring_overflows: u64,
    /// Webhook events dropped because this core's ring to the dispatcher was full.
    pub(crate) webhooks_dropped: u64,
    /// Messages for the Redis bridge dropped because this core's ring to it was full.
    pub(crate) cluster_dropped: u64,
    /// HTTP API publishes refused because the server was busy delivering (503).
    pub(crate) backpressure: u64,
    /// Questions to other cores or nodes answered by their deadline instead.
    pub(crate) questions_expired: u64,
    /// WebSocket handshakes refused for an Origin outside the app's `allowed_origins`.
    pub(crate) origin_refused: u64,
    /// Connections closed for not authorizing within `authorized_connections_timeout`.
    pub(crate) unauthorized_closed: u64,
    /// `pusher_internal:watchlist_events` frames queued for watchers.
    pub(crate) watchlist_events: u64,
    /// `pusher_internal:subscription_count` events published (per channel, on its owner core).
    pub(crate) subscription_count_events: u64,
}

impl Stats {
    pub(crate) fn count_api(&mut self, status: u16) {
        *self.api_requests.entry(status).or_default() += 1;
    }
}
