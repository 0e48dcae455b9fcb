//! The one I/O operation the core performs itself: a non-blocking send on a connection's socket,
//! used to write broadcasts and replies without waking the connection's task. Implemented by
//! `shard::sys` over the real socket; tests substitute a recording fake.

use std::io;

pub trait SocketIo {
    /// Sends as much of `buf` as the socket takes now; `WouldBlock` when it takes nothing.
    fn send(&self, fd: i32, buf: &[u8]) -> io::Result<usize>;
}

/// A synchronous, non-blocking hand-off to another core's ring (implemented by `shard::mesh`).
/// Lets a core give a broadcast to its peers before its own fan-out starts, so that all cores
/// deliver in parallel.
pub trait PeerLink {
    /// Puts `msg` on the ring to `peer`, or gives it back when the ring is full.
    fn try_send(
        &self,
        peer: u32,
        msg: crate::pusher::peer::PeerMsg,
    ) -> Result<(), crate::pusher::peer::PeerMsg>;
}
