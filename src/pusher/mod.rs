//! The Pusher Channels protocol v7 and HTTP API, as a `Service` running on the engine: apps,
//! channels, presence, user sign-in, client events, cache channels, queries across cores and
//! nodes, webhooks.
//!
//! Each core keeps an index of the channels its own connections subscribe to. A publish is
//! encoded once into a WebSocket frame and handed to every core over the mesh; each core queues
//! it for its local subscribers. State with one owner lives on one core, chosen by a hash of its
//! name (`owner_of`): a presence channel's members, an app's connection quota, a channel's
//! occupancy; other cores send joins, leaves and counts there.
//!
//! Architecture Invariant: `pusher/` imports `core/` and `protocol/` only; it reaches other
//! cores by `PeerMsg`s and the threads off the cores (Redis bridge, webhook dispatcher) through
//! `Outlet`s it is given.

pub mod apps;
pub mod auth;
pub(crate) mod channels;
pub(crate) mod conn_state;
pub mod hook_targets;
pub(crate) mod http_api;
pub mod messages;
pub(crate) mod names;
pub(crate) mod origins;
pub(crate) mod peer;
pub(crate) mod presence;
pub(crate) mod query;
pub(crate) mod socket_id;
pub(crate) mod wire;

mod answers;
mod authorized;
mod cluster;
mod counts;
mod fanout;
mod hooks;
mod invariants;
pub(crate) use invariants::{check_presence_owners, check_watch_owners};
mod membership;
mod publish_order;
mod quota;
mod routes;
mod session;
mod stats;
mod watchlist;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

use crate::core::conn::ConnKey;
use crate::core::engine::Engine;
use crate::core::io::{CoreId, Outlet};
use crate::core::service::{Goodbye, Outcome, Policy, Refusal, Service};
use crate::protocol::frame::Opcode;
use crate::protocol::http::Request;
use apps::{App, AppIdx, Apps};
use channels::{ChannelId, Channels};
use conn_state::PusherConn;
use messages::Member;
use presence::Presence;
use query::{CoreReport, Queries};
use socket_id::{NodeId, SocketRef};
pub(crate) use stats::Stats;
use wire::{ClusterOut, Hook};

/// The engine as the Pusher layer sees it.
pub(crate) type Net = Engine<Pusher>;

/// How long a cache channel keeps its last event, in seconds.
pub(crate) const CACHE_TTL: u32 = 1800;

/// Seconds a question to other cores or nodes may wait before it is answered without them.
pub(crate) const QUESTION_TIMEOUT: u32 = 5;

/// What a `Renderer` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rendering {
    /// `/metrics` (OpenMetrics text).
    Metrics,
    /// `/status.json`, read by the status page.
    Status,
}

/// Renders `/metrics` or the status figures from every core's report (given by the layer above,
/// which owns the formats and the figures of the threads off the cores).
pub(crate) type Renderer = fn(&[CoreReport], &[App], Rendering) -> String;

/// What the Pusher layer needs to know beyond the engine's settings.
pub(crate) struct Config {
    /// The apps, in index order.
    pub(crate) apps: Vec<App>,
    /// This node's id in socket ids.
    pub(crate) node: NodeId,
    /// Renders `/metrics` and `/status.json`.
    pub(crate) render: Renderer,
    /// Opens `/status` on the main port (empty: only on the metrics port).
    pub(crate) status_token: String,
    /// Debug builds only: serve the fault-injection routes (`/debug/panic`).
    pub(crate) faults: bool,
}

/// A presence join waiting for the cluster's answer (on the channel's owner core).
pub(crate) struct PendingJoin {
    pub(crate) app: AppIdx,
    pub(crate) channel: Box<str>,
    pub(crate) from: SocketRef,
    pub(crate) member: Member,
    /// The user's first connection in the channel on this node.
    pub(crate) node_new: bool,
    /// Core second after which the join is decided on this node alone.
    pub(crate) deadline: u32,
}

/// The last event of a cache channel, as this core saw it published.
pub(crate) struct Cached {
    pub(crate) frame: Bytes,
    pub(crate) data: Box<str>,
    /// Core clock second when it was published.
    pub(crate) at: u32,
}

pub(crate) type FxMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// One core's Pusher state.
pub(crate) struct Pusher {
    node: NodeId,
    pub(crate) apps: Apps,
    render: Renderer,
    status_token: String,
    /// Serve the debug fault-injection routes (debug builds only).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    faults: bool,
    pub(crate) channels: Channels,
    /// Presence channels this core owns.
    pub(crate) presence: Presence,
    /// This core's connections in presence channels: (slab index, channel) → member.
    pub(crate) memberships: FxMap<(u32, ChannelId), Member>,
    /// Subscriptions beyond a connection's first: slab index → channels.
    pub(crate) more_subs: FxMap<u32, Vec<ChannelId>>,
    /// Signed-in connections: slab index → user id.
    pub(crate) signed_in: FxMap<u32, Box<str>>,
    /// Per app: user id → slab indexes of the connections signed in as that user.
    pub(crate) users: Vec<FxMap<Box<str>, Vec<u32>>>,
    /// Per app: cache channel → last event.
    pub(crate) cache: Vec<FxMap<Box<str>, Cached>>,
    /// Per app, on the app's owner core: connections admitted under its quota.
    pub(crate) quota_used: Vec<u64>,
    /// Per app: connections established on this core.
    pub(crate) connections: Vec<u64>,
    /// Questions to other cores and nodes, and who waits for them.
    pub(crate) queries: Queries,
    /// Per app: (second, requests) for the HTTP API rate limit.
    pub(crate) api_window: Vec<(i64, u32)>,
    /// Per app, on each channel's owner core: subscribers per core (webhooks, live counts).
    pub(crate) occupancy: Vec<FxMap<Box<str>, Vec<u64>>>,
    /// Per app, on each channel's owner core: the live `subscription_count` state.
    pub(crate) counts: Vec<FxMap<Box<str>, counts::CountState>>,
    /// Channels whose live count is due at a later second (or is to be forgotten).
    pub(crate) counts_due: Vec<(AppIdx, Box<str>)>,
    /// Presence joins waiting for the cluster, by token.
    pub(crate) joins: FxMap<u64, PendingJoin>,
    pub(crate) next_token: u64,
    /// Per app, on each user's owner core: online state and this node's watchers.
    pub(crate) watched: Vec<FxMap<Box<str>, watchlist::Watched>>,
    /// Connections signed in with a watchlist: slab index → the users watched.
    pub(crate) watchlists: FxMap<u32, Box<[Box<str>]>>,
    /// Connections whose watchlist's initial state is being gathered: slab index → so far.
    pub(crate) watch_init: FxMap<u32, watchlist::WatchInit>,
    /// On owner cores: watch requests waiting for the cluster, by watcher.
    pub(crate) watch_waits: FxMap<SocketRef, watchlist::WatchWait>,
    /// Connections that must authorize by a deadline (authorized connections).
    pub(crate) deadlines: authorized::Deadlines,
    /// Publish requests waiting for this core to handle what other cores had sent it.
    pub(crate) publish_order: publish_order::Held,
    /// This core's Pusher counters.
    pub(crate) stats: Stats,
    /// This core's ring to the webhook dispatcher (when any app has webhooks).
    pub(crate) webhooks: Option<Box<dyn Outlet<Hook>>>,
    /// This core's ring to the Redis bridge (with --redis).
    pub(crate) cluster: Option<Box<dyn Outlet<ClusterOut>>>,
}

impl Pusher {
    /// One core's Pusher state for `config`.
    pub(crate) fn new(config: Config) -> Pusher {
        let n = config.apps.len();
        Pusher {
            node: config.node,
            apps: Apps::new(config.apps),
            render: config.render,
            status_token: config.status_token,
            faults: config.faults,
            channels: Channels::default(),
            publish_order: publish_order::Held::default(),
            presence: Presence::default(),
            memberships: HashMap::default(),
            more_subs: HashMap::default(),
            signed_in: HashMap::default(),
            users: (0..n).map(|_| HashMap::default()).collect(),
            cache: (0..n).map(|_| HashMap::default()).collect(),
            quota_used: vec![0; n],
            connections: vec![0; n],
            queries: Queries::default(),
            api_window: vec![(0, 0); n],
            occupancy: (0..n).map(|_| HashMap::default()).collect(),
            counts: (0..n).map(|_| HashMap::default()).collect(),
            counts_due: Vec::new(),
            joins: HashMap::default(),
            next_token: 1,
            watched: (0..n).map(|_| HashMap::default()).collect(),
            watchlists: HashMap::default(),
            watch_init: HashMap::default(),
            watch_waits: HashMap::default(),
            deadlines: authorized::Deadlines::default(),
            stats: Stats::default(),
            webhooks: None,
            cluster: None,
        }
    }

    /// Connects this core to the webhook dispatcher.
    pub(crate) fn set_webhooks(&mut self, outlet: Box<dyn Outlet<Hook>>) {
        self.webhooks = Some(outlet);
    }

    /// Connects this core to the Redis bridge.
    pub(crate) fn set_cluster(&mut self, outlet: Box<dyn Outlet<ClusterOut>>) {
        self.cluster = Some(outlet);
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Where connection `key` of this core lives, for socket ids and cross-core replies.
    pub(crate) fn socket_ref(&self, e: &Net, key: ConnKey) -> SocketRef {
        SocketRef { node: self.node, shard: e.shard(), key }
    }

    /// The app a connection belongs to.
    pub(crate) fn app(&self, app: AppIdx) -> &App {
        self.apps.get(app)
    }
}

impl Service for Pusher {
    type Conn = PusherConn;
    type Peer = peer::PeerMsg;

    fn policy(&self) -> Policy {
        Policy {
            ping: messages::ping(),
            pong_timeout: Goodbye {
                notice: Some(messages::error(Some(4201), "Pong reply not received", None)),
                code: 4201,
                reason: "Pong reply not received",
            },
            draining: Goodbye {
                notice: Some(messages::error(Some(4200), "Server is shutting down: reconnect", None)),
                code: 1001,
                reason: "server shutting down",
            },
            slow_consumer: Some(Goodbye {
                notice: Some(messages::error(
                    Some(4100),
                    "Over capacity: client is not reading fast enough",
                    None,
                )),
                code: 4100,
                reason: "Over capacity: client is not reading fast enough",
            }),
            full: Some(Refusal {
                code: 4100,
                message: "Over capacity: the server is at its connection limit".into(),
            }),
        }
    }

    fn request(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        req: &Request<'_>,
        body: &[u8],
        metrics_listener: bool,
    ) -> Outcome<PusherConn> {
        self.route(e, key, req, body, metrics_listener)
    }

    fn opened(&mut self, e: &mut Net, key: ConnKey, refusal: Option<Refusal>) {
        self.open(e, key, refusal);
    }

    fn message(&mut self, e: &mut Net, key: ConnKey, opcode: Opcode, payload: &[u8]) {
        // The Pusher protocol is text only; binary frames are ignored.
        if opcode == Opcode::Text {
            self.text(e, key, payload);
        }
    }

    fn closed(&mut self, e: &mut Net, key: ConnKey) {
        self.close(e, key);
    }

    fn peer(&mut self, e: &mut Net, msg: peer::PeerMsg) {
        self.on_peer(e, msg);
        self.release_publishes(e);
    }

    fn tick(&mut self, e: &mut Net) {
        self.expire_questions(e);
        self.expire_unauthorized(e);
        self.flush_counts(e);
        self.expire_watches(e);
    }
}

/// The core that keeps user `user`'s online state and watchers (watchlist events).
pub(crate) fn user_owner(app: AppIdx, user: &str, cores: u16) -> CoreId {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = FxBuildHasher.build_hasher();
    app.hash(&mut h);
    // Apart from channel names (`owner_of`), which never contain '#' but at the start.
    "#user".hash(&mut h);
    user.hash(&mut h);
    let cores = u64::from(cores.max(1));
    CoreId(u16::try_from(h.finish() % cores).expect("below the core count"))
}

/// The core that owns presence channel (or app quota, with an empty name) `name` of `app`.
pub(crate) fn owner_of(app: AppIdx, name: &str, cores: u16) -> CoreId {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = FxBuildHasher.build_hasher();
    app.hash(&mut h);
    name.hash(&mut h);
    let cores = u64::from(cores.max(1));
    CoreId(u16::try_from(h.finish() % cores).expect("below the core count"))
}
