//! Per-core counters: plain integers owned by one core, summed across cores at scrape time.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// HTTP API requests by response status.
    pub api_requests: BTreeMap<u16, u64>,
    pub accepted: u64,
    pub closed: u64,
    pub ws_opened: u64,
    pub rejected_full: u64,
    pub rejected_draining: u64,
    pub http_requests: u64,
    pub http_errors: u64,
    pub handshake_timeouts: u64,
    pub ping_timeouts: u64,
    pub protocol_errors: u64,
    pub messages_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub slow_consumers: u64,
    pub published: u64,
    pub deliveries: u64,
    pub ring_overflows: u64,
    /// Webhook events dropped because this core's ring to the dispatcher was full.
    pub webhooks_dropped: u64,
    /// Messages for the Redis bridge dropped because this core's ring to it was full.
    pub cluster_dropped: u64,
}

impl Stats {
    pub fn count_api(&mut self, status: u16) {
        *self.api_requests.entry(status).or_default() += 1;
    }
}
