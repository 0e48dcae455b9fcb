//! What one worker process does, sent to it as JSON on its command line.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub worker: usize,
    pub server: SocketAddr,
    /// Local addresses to bind client sockets to (round-robin), with IP_BIND_ADDRESS_NO_PORT.
    pub source_ips: Vec<Ipv4Addr>,
    pub target: Target,
    /// Offer permessage-deflate in the handshake.
    #[serde(default)]
    pub deflate: bool,
    /// Connections this worker holds at each level (cumulative). The worker ramps to a level,
    /// reports it, and waits for `next` or `stop` on stdin.
    pub levels: Vec<usize>,
    /// Connection attempts per second (this worker).
    pub rate: f64,
    pub behaviour: Behaviour,
    pub sample_ms: u64,
    /// Number of this worker's first connection, for naming users and channels.
    pub first_id: usize,
    /// On presence channels, connection `i` is user `user-{i / conns_per_user}`.
    pub conns_per_user: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Target {
    /// A plain WebSocket path such as `/echo`.
    Raw { path: String },
    /// A Pusher-protocol server: `/app/{key}?protocol=7`.
    Pusher { key: String, secret: String },
    /// A plain WebSocket broadcast server: subscribers open `sub_path`, publishers `pub_path`
    /// (`{channel}` replaced by the channel's name); what a publisher sends, the server relays to
    /// every subscriber of that channel.
    Plain { sub_path: String, pub_path: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Behaviour {
    /// Hold the connection; answer heartbeats. With Pusher, subscribe connection `i` to
    /// `channels[i % len]` first (no subscription when empty).
    Idle { channels: Vec<String> },
    /// Subscribe like `Idle`, then hand the socket to the receive thread, which records the
    /// latency of every event (its probe, `frames.rs`) and checks the sequence numbers of
    /// `publishers` publishers.
    Subscribe { channels: Vec<String>, publishers: usize },
    /// Round trips of `size`-byte text messages, one every `interval_ms` per connection.
    Echo { size: usize, interval_ms: u64 },
    /// Join presence channel `channels[i % len]`, stay `stay_ms`, leave, and repeat until
    /// stopped (on the same connection).
    Presence { channels: Vec<String>, stay_ms: u64 },
    /// Connect, subscribe to `channels`, stay `stay_ms` (± `jitter_ms`), disconnect, repeat.
    Churn { channels: Vec<String>, stay_ms: u64, jitter_ms: u64 },
}

impl Behaviour {
    /// Whether connections come and go on their own (the level is a concurrency, not a count).
    pub fn cycles(&self) -> bool {
        matches!(self, Behaviour::Presence { .. } | Behaviour::Churn { .. })
    }
}
