//! The engine's per-core counters: plain integers owned by one core, summed across cores at
//! scrape time.

/// Counters of one core's engine.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    /// TCP connections accepted.
    pub(crate) accepted: u64,
    /// Connections closed and removed.
    pub(crate) closed: u64,
    /// WebSocket handshakes completed (counted connections).
    pub(crate) ws_opened: u64,
    /// Upgrades refused because the core was full.
    pub(crate) rejected_full: u64,
    /// Upgrades refused while draining.
    pub(crate) rejected_draining: u64,
    /// HTTP requests handled.
    pub(crate) http_requests: u64,
    /// HTTP responses with a 4xx or 5xx status sent on closing connections.
    pub(crate) http_errors: u64,
    /// Connections that did not complete a request in time.
    pub(crate) handshake_timeouts: u64,
    /// Connections that did not answer a heartbeat.
    pub(crate) ping_timeouts: u64,
    /// Connections failed for breaking RFC 6455.
    pub(crate) protocol_errors: u64,
    /// WebSocket messages received.
    pub(crate) messages_in: u64,
    /// Frames (and HTTP responses) completely written.
    pub(crate) frames_out: u64,
    /// Send system calls made.
    pub(crate) sends: u64,
    /// Times the flusher paused for a connection's `coalesce_ms` hold to end.
    pub(crate) flush_holds: u64,
    /// Bytes received.
    pub(crate) bytes_in: u64,
    /// Bytes sent.
    pub(crate) bytes_out: u64,
    /// Connections cut off for not reading fast enough.
    pub(crate) slow_consumers: u64,
    /// WebSockets that negotiated permessage-deflate.
    pub(crate) deflate_negotiated: u64,
    /// Fan-out frames queued compressed (the shared compressed copy of a publish).
    pub(crate) deflate_frames: u64,
    /// Bytes those frames saved against their plain copies.
    pub(crate) deflate_bytes_saved: u64,
}
