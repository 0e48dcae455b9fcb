//! Questions one core asks every core (channel occupancy and counts, presence members, per-core
//! figures for /metrics), and the HTTP requests waiting for the answers. The asking core holds
//! the request; each core answers from its own state; the asker merges and responds. No locks.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::apps::AppIdx;
use super::socket_id::NodeId;
use crate::core::conn::ConnKey;
use crate::core::io::CoreId;

/// Which channels a query is about.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    /// Every occupied channel whose name starts with this (may be empty).
    Prefix(Box<str>),
    /// These channels, occupied or not.
    Names(Vec<Box<str>>),
}

#[derive(Debug)]
pub(crate) struct ChannelQuery {
    pub(crate) app: AppIdx,
    pub(crate) filter: Filter,
    /// Include presence member ids (from the owner core).
    pub(crate) members: bool,
}

/// One core's answer about one channel.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// This core's subscribers.
    pub(crate) subscriptions: u64,
    /// Distinct users, from the presence channel's owner core.
    pub(crate) users: Option<u64>,
    /// Member ids, from the owner core, when asked.
    pub(crate) members: Option<Vec<Box<str>>>,
}

pub(crate) type Rows = HashMap<Box<str>, Row, FxBuildHasher>;

/// One core's figures for /metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct CoreReport {
    /// The core.
    pub(crate) shard: u16,
    /// The engine's counters.
    pub(crate) engine: crate::core::stats::Stats,
    /// The Pusher layer's counters.
    pub(crate) pusher: super::Stats,
    /// Open TCP connections.
    pub(crate) connections: u64,
    /// Open (counted) WebSockets.
    pub(crate) websockets: u64,
    /// Channels with local subscribers.
    pub(crate) channels: u64,
    /// Presence members of the channels this core owns.
    pub(crate) presence_members: u64,
    /// Messages waiting for each peer ring.
    pub(crate) ring_depth: u64,
    /// Bytes queued for this core's connections.
    pub(crate) queued_bytes: u64,
    /// Connections waiting for the flusher.
    pub(crate) dirty: u64,
    /// Bytes of per-connection state this core accounts for (slab, heap extras, timers).
    pub(crate) conn_state_bytes: u64,
    /// When asked (the status page): a hash of each channel with local subscribers, so that
    /// channels on several cores are counted once.
    pub(crate) channel_hashes: Vec<u64>,
    /// Per app: connections established on this core.
    pub(crate) app_connections: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) enum Question {
    Channels(Arc<ChannelQuery>),
    /// Per-core figures; `channel_hashes`: with a hash of each local channel.
    Report {
        channel_hashes: bool,
    },
    /// Nothing: the answer says only that the core has handled everything sent to it before
    /// (the rings are FIFO), e.g. the events just published.
    Sync,
}

#[derive(Debug)]
pub(crate) enum Answer {
    Channels(Rows),
    Report(Box<CoreReport>),
    Synced,
}

/// Merges rows from several cores: subscriptions add up; the owner's user count and members win.
pub(crate) fn merge(into: &mut Rows, from: Rows) {
    for (name, row) in from {
        let r = into.entry(name).or_default();
        r.subscriptions += row.subscriptions;
        if row.users.is_some() {
            r.users = row.users;
        }
        if row.members.is_some() {
            r.members = row.members;
        }
    }
}

/// What the waiting HTTP request will make of the answers.
#[derive(Debug)]
pub(crate) enum Reply {
    /// GET /channels: the occupied channels, with user counts (presence) and/or
    /// subscription counts when asked.
    ChannelList { user_count: bool, subscription_count: bool },
    /// GET /channels/{name}.
    ChannelInfo {
        name: Box<str>,
        user_count: bool,
        subscription_count: bool,
        cache: Option<Option<(Box<str>, u32)>>,
    },
    /// GET /channels/{name}/users.
    Users { name: Box<str> },
    /// POST /events with `info`: counts per channel.
    EventInfo { channels: Vec<Box<str>>, user_count: bool, subscription_count: bool },
    /// POST /batch_events with `info` on some events: (channel, user_count, subscription_count) per
    /// event, None for events without `info`.
    BatchInfo { events: Vec<Option<(Box<str>, bool, bool)>> },
    /// GET /metrics.
    Metrics,
    /// GET /status.json.
    Status,
    /// POST /events or /batch_events without `info`: `{}` once every core has the events.
    Published,
}

/// Who waits for a query's answer.
#[derive(Debug)]
pub(crate) enum Target {
    /// An HTTP request on this core (generation-checked: if the connection went, nobody is
    /// answered), answered with `reply` rendered.
    Http { conn: ConnKey, keep_alive: bool, reply: Reply },
    /// Another node's query `id`: the rows go back to it (through the Redis bridge).
    Node { node: NodeId, id: u64 },
}

/// A query waiting for other cores (then, in a cluster, for the other nodes).
pub(crate) struct Pending {
    pub(crate) target: Target,
    /// Cores that have not answered yet.
    pub(crate) waiting: Vec<CoreId>,
    pub(crate) rows: Rows,
    pub(crate) reports: Vec<CoreReport>,
    /// The channel question, kept to forward it to the cluster once the cores answered.
    pub(crate) question: Option<Arc<ChannelQuery>>,
    /// The cluster's answer is awaited (the cores' are in).
    pub(crate) in_cluster: bool,
    /// Core second after which the query is answered with what it has (503 for HTTP).
    pub(crate) deadline: u32,
}

/// The queries a core waits on.
#[derive(Default)]
pub(crate) struct Queries {
    pub(crate) pending: HashMap<u64, Pending, FxBuildHasher>,
    pub(crate) next: u64,
}
