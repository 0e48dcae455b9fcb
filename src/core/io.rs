//! What the core is given instead of performing I/O itself: a connection's socket, a direct
//! path onto the rings to other cores, and outlets to threads off the cores. `shard/` implements
//! them over glommio and the OS; tests substitute fakes that record.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

/// A connection's socket, owned by its slab entry: dropping the entry closes it.
pub(crate) trait Socket {
    /// Reads what has arrived into `buf`; `Ok(0)` is end of stream. Pending registers `cx` to be
    /// woken when there is more.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes as much of `buf` as the socket takes, or registers `cx` to be woken when it can
    /// take more.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Writes as much of `bufs`, in order, as the socket takes now, with one system call;
    /// `WouldBlock` when it takes nothing.
    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Shuts the write side down (a FIN after what was written).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// A synchronous, non-blocking hand-off to another core's ring (implemented by `shard::mesh`),
/// so that a core gives a broadcast to its peers before its own fan-out starts.
pub(crate) trait PeerLink<M> {
    /// Puts `msg` on the ring to `peer`, or gives it back when the ring is full.
    fn try_send(&self, peer: CoreId, msg: M) -> Result<(), M>;
    /// How many messages `peer` has put on its ring to this core so far (only ever grows; every
    /// message counted is already readable).
    fn pushed_from(&self, peer: CoreId) -> u64;
}

/// A bounded ring to a thread off the cores (the Redis bridge, the webhook dispatcher). Never
/// waits: a full ring gives the message back and the caller decides.
pub(crate) trait Outlet<T> {
    /// Pushes `msg`, or gives it back when the ring is full.
    fn push(&mut self, msg: T) -> Result<(), T>;
}

/// A core (shard) of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CoreId(pub(crate) u16);

impl CoreId {
    /// The index of this core in per-core tables.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Every core of a process with `count` cores.
    pub(crate) fn all(count: u16) -> impl Iterator<Item = CoreId> {
        (0..count).map(CoreId)
    }
}

impl std::fmt::Display for CoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
