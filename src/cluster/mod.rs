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
mod bus;
pub(crate) mod ring;
mod scripts;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::io::Outlet;
use crate::pusher::wire::{ClusterIn, ClusterOut};

pub(crate) use bridge::{NodeSetup, claim_node_id, start};

/// Slots in each ring between a core and the bridge.
pub(crate) const RING: usize = 65_536;

/// A core's ends of its rings to the bridge.
pub(crate) struct CoreLink {
    pub(crate) tx: ring::Tx<ClusterOut>,
    pub(crate) rx: ring::Rx<ClusterIn>,
}

impl<T> Outlet<T> for ring::Tx<T> {
    fn push(&mut self, msg: T) -> Result<(), T> {
        ring::Tx::push(self, msg)
    }
}

/// Adapter figures for /metrics and logs, written by the bridge.
pub(crate) struct Status {
    pub(crate) connected: AtomicU64,
    pub(crate) nodes: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) enabled: AtomicU64,
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
pub(crate) struct Snapshot {
    pub(crate) enabled: bool,
    pub(crate) connected: bool,
    pub(crate) nodes: u64,
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
}

pub(crate) fn status() -> Snapshot {
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
