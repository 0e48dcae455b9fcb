//! Per-core counters: plain integers owned by one core, summed across cores at scrape time.

#[derive(Debug, Default, Clone)]
pub struct Stats {
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
}
