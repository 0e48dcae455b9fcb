//! Questions one core asks every core (channel occupancy and counts, presence members, per-core
//! figures for /metrics), and the HTTP requests waiting for the answers. The asking core holds
//! the request; each core answers from its own state; the asker merges and responds. No locks.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::core::conn::ConnKey;
use crate::core::stats::Stats;

/// Which channels a query is about.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Every occupied channel whose name starts with this (may be empty).
    Prefix(Box<str>),
    /// These channels, occupied or not.
    Names(Vec<Box<str>>),
}

#[derive(Debug)]
pub struct ChannelQuery {
    pub app: u32,
    pub filter: Filter,
    /// Include presence member ids (from the owner core).
    pub members: bool,
}

/// One core's answer about one channel.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// This core's subscribers.
    pub subscriptions: u64,
    /// Distinct users, from the presence channel's owner core.
    pub users: Option<u64>,
    /// Member ids, from the owner core, when asked.
    pub members: Option<Vec<Box<str>>>,
}

pub type Rows = HashMap<Box<str>, Row, FxBuildHasher>;

/// One core's figures for /metrics.
#[derive(Debug, Clone, Default)]
pub struct CoreReport {
    pub shard: u32,
    pub stats: Stats,
    pub connections: u64,
    pub websockets: u64,
    pub channels: u64,
    pub presence_members: u64,
    /// Messages waiting for each peer ring.
    pub ring_depth: u64,
    /// Per app: connections established on this core.
    pub app_connections: Vec<u64>,
}

#[derive(Debug, Clone)]
pub enum Question {
    Channels(Arc<ChannelQuery>),
    Report,
}

#[derive(Debug)]
pub enum Answer {
    Channels(Rows),
    Report(Box<CoreReport>),
}

/// Merges rows from several cores: subscriptions add up; the owner's user count and members win.
pub fn merge(into: &mut Rows, from: Rows) {
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
pub enum Reply {
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
}

/// Who waits for a query's answer.
#[derive(Debug)]
pub enum Target {
    /// An HTTP request on this core, answered with `reply` rendered.
    Http { conn: ConnKey, keep_alive: bool, reply: Reply },
    /// Another node's query `id`: the rows go back to it (through the Redis bridge).
    Node { node: u32, id: u64 },
}

/// A query waiting for other cores (then, in a cluster, for the other nodes).
pub struct Pending {
    pub target: Target,
    pub waiting: u32,
    pub rows: Rows,
    pub reports: Vec<CoreReport>,
    /// The channel question, kept to forward it to the cluster once the cores answered.
    pub question: Option<std::sync::Arc<ChannelQuery>>,
    /// The cluster's answer is awaited (the cores' are in).
    pub in_cluster: bool,
}
