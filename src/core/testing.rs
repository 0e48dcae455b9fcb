//! Driving a core without sockets, for unit tests and fuzzing: a fake socket whose input the
//! caller supplies and whose output it reads back, and a driver that runs a connection the way
//! its task would.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::conn::{ConnKey, flag};
use super::io::Socket;
use super::service::Service;
use super::{Core, Flushed};

/// One fake socket's two directions.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    /// Bytes the peer sent, not yet read by the core.
    pub(crate) input: VecDeque<u8>,
    /// The peer closed its side (after `input`).
    pub(crate) eof: bool,
    /// Bytes the core wrote.
    pub(crate) output: Vec<u8>,
    /// Bytes the socket still takes before it would block (None: unlimited).
    pub(crate) room: Option<usize>,
    /// The core shut the write side down.
    pub(crate) shut_down: bool,
    /// Write system calls the core made.
    pub(crate) sends: u64,
}

/// A socket backed by a shared `Pipe`.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeSocket(pub(crate) Rc<RefCell<Pipe>>);

impl FakeSocket {
    /// Takes what the core wrote so far.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().output)
    }

    /// Takes what the core wrote so far, as text.
    #[cfg(test)]
    pub(crate) fn take_text(&self) -> String {
        String::from_utf8_lossy(&self.take()).into_owned()
    }

    /// Makes the socket take at most `n` more bytes (0: blocked).
    pub(crate) fn set_room(&self, n: Option<usize>) {
        self.0.borrow_mut().room = n;
    }

    /// Queues bytes from the peer.
    pub(crate) fn push_input(&self, bytes: &[u8]) {
        self.0.borrow_mut().input.extend(bytes);
    }

    /// The peer closes its side.
    pub(crate) fn close_input(&self) {
        self.0.borrow_mut().eof = true;
    }

    fn write(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        let mut p = self.0.borrow_mut();
        p.sends += 1;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = p.room.map_or(total, |room| room.min(total));
        if n == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = n;
        for b in bufs {
            let take = left.min(b.len());
            p.output.extend_from_slice(&b[..take]);
            left -= take;
        }
        if let Some(room) = p.room.as_mut() {
            *room -= n;
        }
        Ok(n)
    }
}

impl Socket for FakeSocket {
    fn poll_read(&mut self, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut p = self.0.borrow_mut();
        if p.input.is_empty() {
            return if p.eof { Poll::Ready(Ok(0)) } else { Poll::Pending };
        }
        let n = buf.len().min(p.input.len());
        for (slot, byte) in buf.iter_mut().zip(p.input.drain(..n)) {
            *slot = byte;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write(&mut self, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.write(&[buf]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        self.write(&slices)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.borrow_mut().shut_down = true;
        Ok(())
    }
}

/// What a driven connection is doing, as its task would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Open and reading.
    Reading,
    /// Waiting for its socket to take more (output queued).
    Blocked,
    /// Closing: written everything it will write, discarding input until EOF or the timeout.
    Lingering,
    /// Closing with output still queued.
    Flushing,
    /// Not reading until its queue drains (echo backpressure).
    Paused,
    /// Removed: the task ended and the socket is closed.
    Gone,
}

impl<S: Service> Core<S> {
    /// Registers a fake socket as an accepted connection.
    pub(crate) fn accept_fake(&mut self) -> (ConnKey, FakeSocket) {
        let socket = FakeSocket::default();
        let key = self.accept(Box::new(socket.clone()), false);
        (key, socket)
    }

    /// Runs connection `key` (whose socket is `sock`) as its task would, until it waits or
    /// ends; then writes what the flusher would. Returns its state.
    pub(crate) fn run_conn(&mut self, key: ConnKey, sock: &FakeSocket) -> State {
        self.run_conn_unflushed(key, sock);
        self.flush_all();
        self.state(key)
    }

    /// Writes what the flusher would, until it is done or holds (`coalesce_ms`).
    pub(crate) fn flush_all(&mut self) {
        while self.flush(usize::MAX) == Flushed::More {}
    }

    /// Like `run_conn`, but leaves fan-out output queued (as if the flusher had not run yet).
    pub(crate) fn run_conn_unflushed(&mut self, key: ConnKey, sock: &FakeSocket) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let before = sock.0.borrow().input.len();
            if self.drive(key, &mut cx, &mut buf).is_ready() {
                break;
            }
            // `drive` yields after a few reads: go on while it makes progress on the input.
            let after = sock.0.borrow().input.len();
            if after == 0 || after == before {
                break;
            }
        }
    }

    /// What connection `key` is doing.
    pub(crate) fn state(&self, key: ConnKey) -> State {
        let Some(c) = self.e.conn(key) else { return State::Gone };
        if c.has(flag::KILL) {
            State::Gone
        } else if c.has(flag::CLOSE_AFTER_FLUSH) {
            if c.out.is_some() { State::Flushing } else { State::Lingering }
        } else if c.has(flag::BLOCKED) && c.out.is_some() {
            State::Blocked
        } else if c.has(flag::READ_PAUSED) {
            State::Paused
        } else {
            State::Reading
        }
    }
}
