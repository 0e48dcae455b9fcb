//! One connection's entry in the core's slab. Every byte is accounted for: a million idle
//! connections cost a million of these plus the task and the kernel socket, nothing else.

use std::task::Waker;

use super::io::Socket;
use super::outq::OutQueue;
use crate::protocol::decoder::Partial;
use crate::protocol::deflate::Negotiated;

/// A connection's slab index plus the generation that makes stale references detectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnKey {
    /// Slot in the core's slab.
    pub(crate) idx: u32,
    /// Distinguishes the connections that used the slot over time (never 0).
    pub(crate) generation: u32,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Reading HTTP requests (a WebSocket upgrade, an API call, a health check).
    Http,
    /// An open WebSocket.
    Open,
    /// We sent a close frame (or a final response) and wait for the peer, up to the close (or
    /// drain) timeout.
    Closing,
}

/// What runs on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// HTTP on the main listener.
    Http,
    /// HTTP on the metrics listener.
    MetricsHttp,
    /// The engine's own echo WebSocket.
    Echo,
    /// The service's WebSocket.
    Service,
}

/// Flag bits in `Conn::flags`.
pub(crate) mod flag {
    /// A heartbeat ping is outstanding; `timer_at` is its deadline.
    pub(crate) const PING_SENT: u8 = 1 << 0;
    /// Close the socket as soon as the task runs; discard unsent output.
    pub(crate) const KILL: u8 = 1 << 1;
    /// Nothing more is sent; close the socket once the output queue is written.
    pub(crate) const CLOSE_AFTER_FLUSH: u8 = 1 << 2;
    /// Stop reading until the output queue drains (echo backpressure).
    pub(crate) const READ_PAUSED: u8 = 1 << 3;
    /// The WebSocket counts against the core's connection limit.
    pub(crate) const COUNTED: u8 = 1 << 4;
    /// Closing: the write side is shut down; reading and discarding until EOF or the close
    /// timeout.
    pub(crate) const LINGER: u8 = 1 << 5;
    /// HTTP phase: a request waits for other cores (`Outcome::Deferred`); what the client sends
    /// meanwhile is kept. Shares LINGER's bit, which only a closing connection uses.
    pub(crate) const DEFERRED: u8 = LINGER;
    /// The connection is on the core's list of connections with output to write.
    pub(crate) const DIRTY: u8 = 1 << 6;
    /// The socket took less than was offered: the task waits for it to become writable.
    pub(crate) const BLOCKED: u8 = 1 << 7;
}

/// Bytes received but not yet complete: a request head (and body) in the HTTP phase, a frame
/// or message in the WebSocket phase. Allocated only while something is incomplete.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// An incomplete HTTP request, or requests pipelined behind one that waits (`deferred`).
    Head(Vec<u8>),
    /// The frame decoder's state.
    Frame(Partial),
}

/// Per-connection state. `X` is the service's own part (see `Service::Conn`).
///
/// Layout (x86_64), 64 bytes plus `X`:
/// - 16: the socket (a boxed trait object, owned: dropping the entry closes it);
/// - 16: generation 4, last_seen 4, timer_at 4, phase 1, kind 1, flags 1, permessage-deflate 1;
/// - 16: the task's waker;
/// - 8 each: output queue and inbound bytes — null pointers except while output is queued or
///   a request, frame or message is incomplete.
pub(crate) struct Conn<X> {
    pub(crate) socket: Box<dyn Socket>,
    pub(crate) generation: u32,
    /// Second of the last inbound activity (Open), of the phase start (Http, Closing).
    pub(crate) last_seen: u32,
    /// Second of this connection's one valid timer-wheel entry.
    pub(crate) timer_at: u32,
    pub(crate) phase: Phase,
    pub(crate) kind: Kind,
    pub(crate) flags: u8,
    /// The permessage-deflate parameters the WebSocket negotiated, if any.
    pub(crate) deflate: Option<Negotiated>,
    pub(crate) waker: Option<Waker>,
    pub(crate) out: Option<Box<OutQueue>>,
    pub(crate) inbound: Option<Box<Inbound>>,
    /// The service's per-connection state.
    pub(crate) ext: X,
}

const _: () = assert!(std::mem::size_of::<Conn<()>>() == 64);

impl<X: Default> Conn<X> {
    pub(crate) fn new(socket: Box<dyn Socket>, generation: u32, now: u32, kind: Kind) -> Conn<X> {
        Conn {
            socket,
            generation,
            last_seen: now,
            timer_at: 0,
            phase: Phase::Http,
            kind,
            flags: 0,
            deflate: None,
            waker: None,
            out: None,
            inbound: None,
            ext: X::default(),
        }
    }
}

impl<X> Conn<X> {
    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    pub(crate) fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }

    /// The connection's key.
    pub(crate) fn key(&self, idx: u32) -> ConnKey {
        ConnKey { idx, generation: self.generation }
    }

    /// Whether the WebSocket is open (not closing, not HTTP).
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open && !self.has(flag::CLOSE_AFTER_FLUSH) && !self.has(flag::KILL)
    }

    /// A request on this connection waits for other cores.
    pub(crate) fn has_deferred(&self) -> bool {
        self.phase == Phase::Http && self.has(flag::DEFERRED)
    }

    pub(crate) fn set_deferred(&mut self, on: bool) {
        if on { self.set(flag::DEFERRED) } else { self.clear(flag::DEFERRED) }
    }

    /// Bytes queued for the socket.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.bytes())
    }

    pub(crate) fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    /// Heap bytes owned by this connection beyond its slab entry and its socket (for
    /// accounting).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.heap_bytes())
            + self.inbound.as_ref().map_or(0, |i| {
                std::mem::size_of::<Inbound>()
                    + match &**i {
                        Inbound::Head(h) => h.capacity(),
                        Inbound::Frame(p) => p.heap_bytes(),
                    }
            })
    }
}
