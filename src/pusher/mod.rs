//! The Pusher Channels protocol v7 on top of the per-core `Core`: apps, channels, presence,
//! user sign-in, client events, cache channels, and the HTTP API.
//!
//! Each core keeps an index of the channels its own connections subscribe to. A publish is
//! encoded once into a WebSocket frame and handed to every core over the mesh; each core writes
//! it to its local subscribers. A presence channel's membership lives on one owner core (a hash
//! of its name); other cores send joins and leaves there.
//!
//! Architecture Invariant: `pusher/` never imports glommio; it runs inside a `Core` and reaches
//! other cores only by queueing `PeerMsg`s.

pub mod apps;
pub mod auth;
pub mod channels;
pub mod http_api;
pub mod messages;
pub mod names;
pub mod peer;
pub mod presence;
pub mod query;
pub mod socket_id;

mod answers;
mod cluster;
mod fanout;
mod hooks;
mod session;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

use apps::App;
use channels::Channels;
use messages::Member;
use presence::Presence;

/// How long a cache channel keeps its last event, in seconds.
pub const CACHE_TTL: u32 = 1800;

/// A presence join waiting for the cluster's answer (on the channel's owner core).
pub struct PendingJoin {
    pub app: u32,
    pub channel: Box<str>,
    pub from: socket_id::SocketRef,
    pub member: Member,
}

/// The last event of a cache channel, as this core saw it published.
pub struct Cached {
    pub frame: Bytes,
    pub data: Box<str>,
    /// Core clock second when it was published.
    pub at: u32,
}

type FxMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// Per-core Pusher state.
pub struct PusherState {
    pub apps: Vec<App>,
    by_key: FxMap<String, u16>,
    by_id: FxMap<String, u16>,
    pub channels: Channels,
    /// Presence channels this core owns.
    pub presence: Presence,
    /// This core's connections in presence channels: (slab index, channel id) → member.
    pub memberships: FxMap<(u32, u32), Member>,
    /// Signed-in connections: slab index → user id.
    pub signed_in: FxMap<u32, Box<str>>,
    /// Per app: user id → slab indexes of the connections signed in as that user.
    pub users: Vec<FxMap<Box<str>, Vec<u32>>>,
    /// Per app: cache channel → last event.
    pub cache: Vec<FxMap<Box<str>, Cached>>,
    /// Per app, on the app's owner core: connections admitted under its quota.
    pub quota_used: Vec<u64>,
    /// Per app: connections established on this core.
    pub connections: Vec<u64>,
    /// HTTP requests waiting for other cores' answers, by question id.
    pub pending: FxMap<u64, query::Pending>,
    pub next_query: u64,
    /// Slab indexes of the connections with a request in `pending`.
    pub waiting_conns: std::collections::HashSet<u32, FxBuildHasher>,
    /// Per app: (second, requests) for the HTTP API rate limit.
    pub api_window: Vec<(i64, u32)>,
    /// Per app, on each channel's owner core: subscribers per core (webhooks).
    pub occupancy: Vec<FxMap<Box<str>, Vec<u64>>>,
    /// Presence joins waiting for the cluster, by token.
    pub joins: FxMap<u64, PendingJoin>,
    pub next_token: u64,
}

impl PusherState {
    pub fn new(apps: &[App]) -> PusherState {
        let n = apps.len();
        PusherState {
            apps: apps.to_vec(),
            by_key: apps.iter().enumerate().map(|(i, a)| (a.key.clone(), i as u16)).collect(),
            by_id: apps.iter().enumerate().map(|(i, a)| (a.id.clone(), i as u16)).collect(),
            channels: Channels::default(),
            presence: Presence::default(),
            memberships: HashMap::default(),
            signed_in: HashMap::default(),
            users: (0..n).map(|_| HashMap::default()).collect(),
            cache: (0..n).map(|_| HashMap::default()).collect(),
            quota_used: vec![0; n],
            connections: vec![0; n],
            pending: HashMap::default(),
            next_query: 0,
            waiting_conns: Default::default(),
            api_window: vec![(0, 0); n],
            occupancy: (0..n).map(|_| HashMap::default()).collect(),
            joins: HashMap::default(),
            next_token: 1,
        }
    }

    pub fn app_by_key(&self, key: &str) -> Option<u16> {
        self.by_key.get(key).copied()
    }

    pub fn app_by_id(&self, id: &str) -> Option<u16> {
        self.by_id.get(id).copied()
    }
}

/// The core that owns presence channel (or app quota) `name` of `app`.
pub fn owner_of(app: u32, name: &str, shards: u32) -> u32 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = FxBuildHasher.build_hasher();
    app.hash(&mut h);
    name.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as u32
}
