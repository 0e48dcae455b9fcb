//! The corked write path. Frames due to a connection are queued (shared `Bytes`, no copy) and
//! written with one vectored send per connection per turn:
//!
//! - a direct reply marks its connection *urgent*: it is written before the entry point that
//!   produced it returns, together with anything already queued for that connection;
//! - a fan-out marks its connections *dirty*: the shard's flusher task writes them once the
//!   tasks already runnable have run, so everything published in that turn leaves in one send
//!   per subscriber. Under load, what is published while a pass is under way goes into the next
//!   one, so batches grow by themselves; at low load the flusher runs at once;
//! - with `coalesce_ms` set, once the dirty list has not been empty for that long, a
//!   connection waits until `coalesce_ms` after it became dirty: fewer, larger sends under
//!   sustained load, for that much more latency.
//!
//! A socket that takes less than offered is *blocked*: its task waits until it is writable and
//! writes the rest; flushes skip it meanwhile.

use std::io::{ErrorKind, IoSlice};
use std::task::Waker;

use super::conn::{ConnKey, flag};
use super::engine::Engine;
use super::outq::{MAX_IOV, OutQueue};
use super::service::Service;

/// What the flusher does after `flush`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Nothing waits: sleep until a connection becomes dirty.
    Done,
    /// Connections wait: let the reactor turn, then go on.
    More,
    /// The next connection is held back to coalesce: go on at this `clock_ms`.
    HoldUntil(u64),
}

impl<S: Service> Engine<S> {
    /// Writes the urgent connections (direct replies).
    pub(crate) fn flush_urgent(&mut self) {
        let mut urgent = std::mem::take(&mut self.urgent);
        for key in urgent.drain(..) {
            self.write_conn(key);
        }
        // Keep the allocation unless a burst made it large.
        if urgent.capacity() <= 1024 {
            self.urgent = urgent;
        }
    }

    /// Writes up to `budget` dirty connections, oldest first.
    ///
    /// Once the list has not been empty for `coalesce_ms`, a connection is written no sooner
    /// than `coalesce_ms` after it became dirty, so that under sustained load every send
    /// carries what arrived over that time; until then (and at low load) it is written as soon
    /// as the flusher gets to it.
    pub(crate) fn flush(&mut self, budget: usize) -> Flushed {
        let hold = self.settings().coalesce_ms;
        let holding = hold > 0 && self.clock_ms.saturating_sub(self.backlog_since) >= hold;
        for _ in 0..budget {
            let Some(&due) = self.dirty.front() else { break };
            // Entries are in the order they became due: holding at the front (even at a stale
            // entry) delays nothing that is not held anyway.
            let until = due.at_ms.saturating_add(hold);
            if holding && until > self.clock_ms {
                self.stats.flush_holds += 1;
                return Flushed::HoldUntil(until);
            }
            self.dirty.pop_front();
            let Some(conn) = self.conn_mut(due.key) else { continue };
            if !conn.has(flag::DIRTY) {
                continue;
            }
            conn.clear(flag::DIRTY);
            self.write_conn(due.key);
        }
        if !self.dirty.is_empty() {
            return Flushed::More;
        }
        if self.dirty.capacity() > 65_536 {
            self.dirty.shrink_to(1024);
        }
        Flushed::Done
    }

    /// Registers the flusher task; true if connections wait to be written.
    pub(crate) fn flusher_ready(&mut self, waker: &Waker) -> bool {
        match &self.flusher {
            Some(w) if w.will_wake(waker) => {}
            _ => self.flusher = Some(waker.clone()),
        }
        !self.dirty.is_empty()
    }

    /// Connections waiting for the flusher.
    pub(crate) fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// Writes as much of `key`'s queue as its socket takes now, in vectored sends of up to
    /// `MAX_IOV` frames.
    pub(crate) fn write_conn(&mut self, key: ConnKey) {
        let resume_below = self.settings().max_outbound_bytes / 2;
        let spare = &mut self.spare_queues;
        let Some(conn) = self.conns.get_mut(key.idx as usize).filter(|c| c.generation == key.generation)
        else {
            return;
        };
        if conn.has(flag::BLOCKED) || conn.has(flag::KILL) {
            return;
        }
        let mut written = 0usize;
        let mut frames = 0u64;
        let mut sends = 0u64;
        while let Some(q) = conn.out.as_deref_mut() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = q.iovecs(&mut iov);
            let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
            sends += 1;
            match conn.socket.send_vectored(&iov[..n]) {
                Ok(w) => {
                    written += w;
                    frames += q.advance(w);
                    if q.is_empty() {
                        recycle(spare, conn.out.take());
                        break;
                    }
                    if w < offered {
                        // Full: the task waits for room and writes the rest.
                        conn.set(flag::BLOCKED);
                        conn.wake();
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    conn.set(flag::BLOCKED);
                    conn.wake();
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.set(flag::KILL);
                    conn.wake();
                    break;
                }
            }
        }
        if conn.out.is_none() && conn.has(flag::CLOSE_AFTER_FLUSH) {
            // Everything is out: the task closes (after lingering).
            conn.wake();
        }
        if conn.has(flag::READ_PAUSED) && conn.queued_bytes() <= resume_below {
            conn.clear(flag::READ_PAUSED);
            conn.wake();
        }
        self.wrote(written, frames, sends);
    }

    /// The task wrote `n` bytes of `key`'s queue itself (once the socket became writable).
    pub(crate) fn wrote_by_task(&mut self, key: ConnKey, n: usize) {
        let Some(conn) = self.conn_mut(key) else { return };
        let frames = conn.out.as_deref_mut().map_or(0, |q| q.advance(n));
        if conn.out.as_ref().is_some_and(|q| q.is_empty()) {
            conn.out = None;
        }
        conn.clear(flag::BLOCKED);
        self.wrote(n, frames, 1);
    }

    fn wrote(&mut self, bytes: usize, frames: u64, sends: u64) {
        self.queued = self.queued.saturating_sub(bytes);
        self.stats.bytes_out += bytes as u64;
        self.stats.frames_out += frames;
        self.stats.sends += sends;
    }
}

/// Most emptied queues a core keeps for reuse.
const SPARE_QUEUES: usize = 4096;

/// Keeps an emptied queue for the next connection that needs one (unless it grew large).
#[allow(clippy::vec_box)]
fn recycle(spare: &mut Vec<Box<OutQueue>>, q: Option<Box<OutQueue>>) {
    if let Some(q) = q
        && spare.len() < SPARE_QUEUES
        && q.is_reusable()
    {
        spare.push(q);
    }
}
