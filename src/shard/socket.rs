//! A connection's socket as the core sees it (`core::io::Socket`): a glommio stream, whose
//! reads and writability waits go through glommio's reactor, and whose vectored sends are
//! direct non-blocking system calls.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::core::io::Socket;

pub(super) struct GlommioSocket(pub(super) TcpStream);

impl Socket for GlommioSocket {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        super::sys::send_vectored(&self.0, bufs)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        let waker = std::task::Waker::noop();
        match Pin::new(&mut self.0).poll_close(&mut Context::from_waker(waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }
}
