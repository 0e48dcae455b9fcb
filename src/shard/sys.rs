//! The crate's only `unsafe`: lending a glommio socket's file descriptor (glommio implements
//! only `AsRawFd`) to socket2 for the calls glommio does not offer, and adopting listening
//! sockets built with socket2.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};

/// Runs `f` with `stream`'s fd, borrowed for the call.
fn with_fd<R>(stream: &glommio::net::TcpStream, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: the fd belongs to `stream`, which is borrowed for the whole call, so it stays open
    // and refers to this socket; the BorrowedFd does not outlive this function.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    f(socket2::SockRef::from(&fd))
}

/// A non-blocking vectored send (`sendmsg` with MSG_DONTWAIT; MSG_NOSIGNAL turns a closed peer
/// into EPIPE instead of SIGPIPE).
pub(super) fn send_vectored(stream: &glommio::net::TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    with_fd(stream, |s| s.send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL))
}

/// Sets SO_SNDBUF on an accepted stream.
pub(super) fn set_send_buffer(stream: &glommio::net::TcpStream, bytes: usize) -> io::Result<()> {
    with_fd(stream, |s| s.set_send_buffer_size(bytes))
}

/// Adopts a bound, listening socket as a glommio listener on the current executor.
pub(super) fn adopt_listener(socket: socket2::Socket) -> glommio::net::TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is an open, bound, listening TCP
    // socket that nothing else owns; the glommio listener takes sole ownership and closes it.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}
