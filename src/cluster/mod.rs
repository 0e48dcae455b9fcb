//! Scale-out: several corecast nodes sharing Redis behave as one server.
//!
//! With `--redis`, each process runs one bridge thread (tokio + the `redis` crate) off the
//! connection cores. Cores talk to it only through bounded lock-free SPSC rings (`ring`), so a
//! core never blocks on Redis. The bridge:
//! - publishes every event that originates on this node to the `P:bus` pub/sub channel, and
//!   hands events from other nodes to every local core (events carry their origin node, so the
//!   originating node never delivers twice);
//! - keeps cluster-wide presence and occupancy in Redis with atomic Lua scripts (`scripts`):
//!   each node's presence owner core reports a user's first and last connection *on this node*,
//!   and the script says whether that is the first or last in the cluster, so `member_added`,
//!   `member_removed` and their webhooks fire once cluster-wide;
//! - answers HTTP API queries cluster-wide by asking the other nodes over the bus;
//! - refreshes this node's heartbeat key and removes the presence of nodes whose key expired;
//! - reconnects with backoff when Redis is down, re-registering this node's presence; meanwhile
//!   local delivery goes on and cross-node messages are dropped (counted), never queued without
//!   bound.

mod bridge;
pub mod bus;
pub mod ring;
pub mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pusher::messages::Member;
use crate::pusher::peer::Publish;
use crate::pusher::query::{Filter, Rows};

pub use bridge::{claim_node_id, start};

/// Messages a core sends to the bridge.
#[derive(Debug)]
pub enum ClusterOut {
    /// An event that originated on this node: publish it to the other nodes.
    Publish(Arc<Publish>),
    /// From a presence channel's owner core: `member` has its first connection on this node
    /// (`node_new`) or another one; answer with `Joined` and the cluster's members.
    Join {
        shard: u32,
        token: u64,
        app: u16,
        channel: Box<str>,
        member: Member,
        node_new: bool,
        max: usize,
    },
    /// From the owner core: the user's last connection on this node left; answer with `Left`.
    Leave {
        shard: u32,
        app: u16,
        channel: Box<str>,
        member: Member,
    },
    /// From a channel's owner core: the channel became occupied or vacated on this node.
    Occupied {
        shard: u32,
        app: u16,
        channel: Box<str>,
        occupied: bool,
    },
    /// After a reconnect: this node's current presence and occupancy, re-registered silently.
    Rejoin {
        app: u16,
        channel: Box<str>,
        member: Member,
    },
    Reoccupy {
        app: u16,
        channel: Box<str>,
    },
    /// Close every connection signed in as `user_id`, on every node.
    Terminate {
        app: u16,
        user_id: Box<str>,
    },
    /// A query answered by this node's cores (`rows`): add the other nodes' answers and the
    /// cluster's presence counts, then answer with `Answered`.
    Ask {
        shard: u32,
        id: u64,
        app: u16,
        filter: Filter,
        members: bool,
        rows: Rows,
    },
    /// This node's answer to another node's query.
    Answer {
        to_node: u32,
        id: u64,
        rows: Rows,
    },
}

/// Messages the bridge sends to a core.
#[derive(Debug)]
pub enum ClusterIn {
    /// An event from another node: deliver to this core's subscribers.
    Publish(Arc<Publish>),
    /// The cluster's answer to a `Join`: whether the user is new to the cluster, whether the
    /// channel is full, and every member (None when Redis is unreachable).
    Joined {
        token: u64,
        added: bool,
        full: bool,
        members: Option<Vec<Member>>,
    },
    /// The cluster's answer to a `Leave`: whether the user left the cluster.
    Left {
        app: u16,
        channel: Box<str>,
        member: Member,
        removed: bool,
    },
    /// A webhook event decided by the cluster (occupancy, a dead node's members).
    Webhook {
        app: u16,
        event: serde_json::Value,
    },
    Terminate {
        app: u16,
        user_id: Box<str>,
    },
    /// Another node asks (to core 0): answer with `ClusterOut::Answer`.
    Ask {
        from_node: u32,
        id: u64,
        app: u16,
        filter: Filter,
        members: bool,
    },
    /// The cluster-wide rows for query `id`.
    Answered {
        id: u64,
        rows: Rows,
    },
    /// Redis is back: send this core's presence and occupancy again (`Rejoin`, `Reoccupy`).
    Resync,
}

/// Slots in each ring between a core and the bridge.
pub const RING: usize = 65_536;

/// A core's ends of its rings to the bridge.
pub struct CoreLink {
    pub tx: ring::Tx<ClusterOut>,
    pub rx: Option<ring::Rx<ClusterIn>>,
}

/// Adapter figures for /metrics and logs, written by the bridge.
pub(crate) struct Status {
    pub connected: AtomicU64,
    pub nodes: AtomicU64,
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub enabled: AtomicU64,
}

pub(crate) static STATUS: Status = Status {
    connected: AtomicU64::new(0),
    nodes: AtomicU64::new(0),
    published: AtomicU64::new(0),
    received: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    enabled: AtomicU64::new(0),
};

/// A snapshot of the adapter figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub enabled: bool,
    pub connected: bool,
    pub nodes: u64,
    pub published: u64,
    pub received: u64,
    pub dropped: u64,
}

pub fn status() -> Snapshot {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        enabled: g(&STATUS.enabled) == 1,
        connected: g(&STATUS.connected) == 1,
        nodes: g(&STATUS.nodes),
        published: g(&STATUS.published),
        received: g(&STATUS.received),
        dropped: g(&STATUS.dropped),
    }
}
