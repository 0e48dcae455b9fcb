//! The raw socket calls glommio does not offer: a non-blocking send on a connection's fd from
//! outside the connection's task. All of the crate's `unsafe` lives here.

use std::io;

use crate::core::io::SocketIo;

/// Sends on sockets owned by this core's connection tasks.
pub struct RawSend;

impl SocketIo for RawSend {
    fn send(&self, fd: i32, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid readable region of `buf.len()` bytes for the duration of the
        // call. `fd` is the socket of a connection present in this core's slab: its task owns the
        // socket and removes the slab entry before closing the fd, and both run on this thread,
        // so the fd is open and refers to that socket. MSG_NOSIGNAL turns a closed peer into
        // EPIPE instead of SIGPIPE; MSG_DONTWAIT makes the call non-blocking.
        let n = unsafe {
            libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// Adopts a bound, listening socket as a glommio listener on the current executor.
pub fn adopt_listener(socket: socket2::Socket) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is an open, bound, listening TCP
    // socket that nothing else owns; the glommio listener takes sole ownership and closes it.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// Sets SO_SNDBUF on an accepted stream (glommio's stream exposes only its raw fd).
pub fn set_send_buffer(stream: &glommio::net::TcpStream, bytes: usize) -> io::Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the fd belongs to `stream`, which is borrowed for the whole call, so it stays
    // open; the BorrowedFd does not outlive this function.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    socket2::SockRef::from(&fd).set_send_buffer_size(bytes)
}
