//! One connection's state, kept in the core's slab. Every byte is accounted for: a million idle
//! connections cost a million of these plus the task and kernel socket, nothing else.

use std::task::Waker;

use super::outq::OutQueue;
use crate::protocol::decoder::Partial;

/// A connection's slab index plus the generation that makes stale references detectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub idx: u32,
    pub generation: u32,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading HTTP requests (a WebSocket upgrade, an API call, a health check).
    Http,
    /// An open WebSocket.
    Open,
    /// We sent a close frame and wait for the peer's, up to the close (or drain) timeout.
    Closing,
}

/// What the WebSocket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Endpoint {
    None,
    Echo,
    Pusher,
    /// Accepted on the metrics listener: only /metrics, / and /ready are served.
    Metrics,
}

/// Flag bits in `Conn::flags`.
pub mod flag {
    /// A heartbeat ping is outstanding; `timer_at` is its deadline.
    pub const PING_SENT: u8 = 1 << 0;
    /// Close the socket as soon as the task runs; discard unsent output.
    pub const KILL: u8 = 1 << 1;
    /// Close the socket once the output queue is written.
    pub const CLOSE_AFTER_FLUSH: u8 = 1 << 2;
    /// Stop reading until the output queue drains (echo backpressure).
    pub const READ_PAUSED: u8 = 1 << 3;
    /// The WebSocket counts against the core's connection limit.
    pub const COUNTED: u8 = 1 << 4;
    /// The write side is shut down; reading and discarding until EOF or the close timeout.
    pub const LINGER: u8 = 1 << 5;
    /// Pusher: `connection_established` was sent (the app's quota admitted it).
    pub const ADMITTED: u8 = 1 << 6;
    /// Pusher: signed in with `pusher:signin`.
    pub const SIGNED_IN: u8 = 1 << 7;
}

/// Per-connection state.
///
/// Layout (x86_64), 80 bytes:
/// - 24: fd 4, generation 4, last_seen 4, timer_at 4, phase 1, endpoint 1, flags 1,
///   client-event count 1, app 2, client-event second 2;
/// - 16: the task's waker;
/// - 8 each: output queue, request-head buffer, frame decoder state — null pointers except
///   while output is queued, a request is half-read, or a frame or message is incomplete;
/// - 16: the subscription list (`Subs`).
pub struct Conn {
    pub fd: i32,
    pub generation: u32,
    /// Second of the last inbound activity (Open), of the phase start (Http, Closing).
    pub last_seen: u32,
    /// Second of this connection's one valid timer-wheel entry.
    pub timer_at: u32,
    pub phase: Phase,
    pub endpoint: Endpoint,
    pub flags: u8,
    /// Client events sent in second `rate_second` (rate limit).
    pub rate_count: u8,
    /// Index of the Pusher app (`Endpoint::Pusher`).
    pub app: u16,
    /// Low 16 bits of the second `rate_count` counts.
    pub rate_second: u16,
    pub waker: Option<Waker>,
    pub out: Option<Box<OutQueue>>,
    pub head: Option<Box<Vec<u8>>>,
    pub rx: Option<Box<Partial>>,
    pub subs: Subs,
}

const _: () = assert!(std::mem::size_of::<Conn>() <= 80);

impl Conn {
    pub fn new(fd: i32, generation: u32, now: u32) -> Conn {
        Conn {
            fd,
            generation,
            last_seen: now,
            timer_at: 0,
            phase: Phase::Http,
            endpoint: Endpoint::None,
            flags: 0,
            rate_count: 0,
            app: 0,
            rate_second: 0,
            waker: None,
            out: None,
            head: None,
            rx: None,
            subs: Subs::default(),
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    pub fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }

    pub fn queued_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.bytes())
    }

    pub fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    /// Heap bytes owned by this connection beyond its slab entry (for accounting).
    pub fn heap_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| std::mem::size_of::<OutQueue>() + q.bytes())
            + self.head.as_ref().map_or(0, |h| 24 + h.capacity())
            + self.rx.as_ref().map_or(0, |p| std::mem::size_of::<Partial>() + p.heap_bytes())
            + self.subs.heap_bytes()
    }
}

/// A connection's channel subscriptions as interned per-core channel ids: the first inline, the
/// rest (rare) on the heap. 16 bytes.
#[derive(Debug, Default)]
pub struct Subs {
    first: Option<std::num::NonZeroU32>,
    // A boxed Vec keeps `Subs` at 16 bytes for the common case of zero or one subscription.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<u32>>>,
}

impl Subs {
    pub fn contains(&self, id: u32) -> bool {
        self.first.is_some_and(|f| f.get() == id) || self.rest.as_ref().is_some_and(|r| r.contains(&id))
    }

    /// Adds `id` (non-zero); false if already present.
    pub fn insert(&mut self, id: u32) -> bool {
        if self.contains(id) {
            return false;
        }
        let nz = std::num::NonZeroU32::new(id).expect("channel ids start at 1");
        if self.first.is_none() {
            self.first = Some(nz);
        } else {
            self.rest.get_or_insert_with(Default::default).push(id);
        }
        true
    }

    pub fn remove(&mut self, id: u32) -> bool {
        if self.first.is_some_and(|f| f.get() == id) {
            self.first = self.rest.as_mut().and_then(|r| r.pop()).and_then(std::num::NonZeroU32::new);
        } else if let Some(pos) = self.rest.as_ref().and_then(|r| r.iter().position(|&x| x == id)) {
            self.rest.as_mut().expect("found in rest").swap_remove(pos);
        } else {
            return false;
        }
        if self.rest.as_ref().is_some_and(|r| r.is_empty()) {
            self.rest = None;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.first.is_some() as usize + self.rest.as_ref().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.first.map(|f| f.get()).into_iter().chain(self.rest.iter().flat_map(|r| r.iter().copied()))
    }

    pub fn take_all(&mut self) -> Vec<u32> {
        let all = self.iter().collect();
        *self = Subs::default();
        all
    }

    fn heap_bytes(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| 24 + 4 * r.capacity())
    }
}

const _: () = assert!(std::mem::size_of::<Subs>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subs_insert_remove_keep_the_rest() {
        let mut s = Subs::default();
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(5));
        assert!(s.insert(9));
        assert_eq!(s.len(), 3);
        assert!(s.remove(3));
        assert!(s.contains(5) && s.contains(9) && !s.contains(3));
        assert!(s.remove(9) && s.remove(5));
        assert!(s.is_empty() && s.rest.is_none());
    }
}
