//! The one I/O operation the core performs itself: a non-blocking send on a connection's socket,
//! used to write broadcasts and replies without waking the connection's task. Implemented by
//! `shard::sys` over the real socket; tests substitute a recording fake.

use std::io;

pub trait SocketIo {
    /// Sends as much of `buf` as the socket takes now; `WouldBlock` when it takes nothing.
    fn send(&self, fd: i32, buf: &[u8]) -> io::Result<usize>;
}
