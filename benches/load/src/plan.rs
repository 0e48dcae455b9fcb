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
    /// Which of the behaviour's channels connection `i` takes.
    #[serde(default)]
    pub layout: Layout,
    /// Most connection attempts in flight at once in this worker (0: no limit, the rate alone
    /// paces them): a server slower than the rate then slows the ramp instead of making
    /// attempts time out. An attempt counts until its subscription is confirmed.
    #[serde(default)]
    pub max_pending: usize,
}

/// How connection `i` (user `u`) picks one of `len` channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `channels[u % len]`.
    #[default]
    Cycle,
    /// The first `public` channels are public and the rest presence channels. Connection `i`
    /// is on a presence channel when `i % 100 < presence_percent` — spread evenly over the
    /// presence channels in order of `i` — and otherwise on the public channels in turn.
    Mix { public: usize, presence_percent: u32 },
}

impl Layout {
    pub fn channel(&self, i: usize, user: usize, len: usize) -> usize {
        let len = len.max(1);
        match *self {
            Layout::Cycle => user % len,
            Layout::Mix { public, presence_percent } => {
                let presence = len.saturating_sub(public);
                let pct = presence_percent.min(100) as usize;
                let r = i % 100;
                if presence > 0 && public == 0 {
                    i % presence
                } else if presence > 0 && r < pct {
                    // This connection's rank among the presence connections.
                    let rank = (i / 100) * pct + r;
                    public + rank % presence
                } else if presence > 0 {
                    // This connection's rank among the public connections.
                    let rank = (i / 100) * (100 - pct) + r.saturating_sub(pct);
                    rank % public.max(1)
                } else {
                    i % public.max(1)
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_puts_the_given_share_on_presence_channels_evenly() {
        let mix = Layout::Mix { public: 4, presence_percent: 5 };
        let len = 4 + 3;
        let mut per = vec![0usize; len];
        for i in 0..10_000 {
            per[mix.channel(i, i, len)] += 1;
        }
        let presence: usize = per[4..].iter().sum();
        assert_eq!(presence, 500, "5 % of 10,000");
        assert!(per[4..].iter().all(|&n| n == 166 || n == 167), "{per:?}");
        assert!(per[..4].iter().all(|&n| (2370..=2380).contains(&n)), "{per:?}");
        assert_eq!(Layout::Cycle.channel(7, 3, 2), 1, "the user picks the channel");
        let all_presence = Layout::Mix { public: 0, presence_percent: 100 };
        assert_eq!(all_presence.channel(5, 5, 2), 1);
    }
}
