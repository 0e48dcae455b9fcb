//! The generic per-core connection engine: the connection table (slab + generations), timers
//! and heartbeats, the HTTP/1.1 phase and upgrade, the WebSocket phase, output queues and the
//! corked write path, admission, drain, counters and the plumbing to other cores.
//!
//! `Core<S>` is an `Engine` (everything about connections) plus a `Service` (what runs on
//! them: the Pusher protocol). The shard (`shard/`, the only glommio code) drives it: each
//! connection's task calls `drive`, the flusher task calls `flush`, the mesh hands over peer
//! messages, the ticker advances the clock. Sockets are given to it as `io::Socket` trait
//! objects; it never blocks and never reads a clock.
//!
//! Architecture Invariant: `core/` imports only `protocol/` and crates — never the layers above
//! it (`pusher/`, `cluster/`, `webhooks/`, `metrics`, `config`, `shard/`), never glommio.
//! Architecture Invariant: one `Core` per shard, touched only by that shard's thread.

pub(crate) mod conn;
pub(crate) mod engine;
pub(crate) mod io;
mod outq;
mod peers;
pub(crate) mod service;
pub(crate) mod stats;
mod timers;
mod wheel;
mod write;

pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub(crate) mod tls;

mod http_phase;
mod invariants;
mod ws_phase;

use std::task::{Context, Poll};

use conn::{ConnKey, Kind, Phase, flag};
use engine::{Engine, Settings};
use io::{CoreId, Socket};
use service::Service;
pub(crate) use write::Flushed;

/// Reads handled per `drive` call before the task yields to the others.
const READS_PER_TURN: usize = 4;

/// One core: the engine and the service running on it.
pub(crate) struct Core<S: Service> {
    /// Connections, clock, counters, write path.
    pub(crate) e: Engine<S>,
    /// What runs on the connections.
    pub(crate) s: S,
}

impl<S: Service> Core<S> {
    /// A core with no connections, its clock at `now`.
    pub(crate) fn new(shard: CoreId, settings: Settings, service: S, now: u32) -> Core<S> {
        let policy = service.policy();
        Core { e: Engine::new(shard, settings, policy, now), s: service }
    }

    /// Registers an accepted socket and starts its handshake timeout. `metrics_listener`: it
    /// came in on the metrics port (only health and the service's metrics are served there).
    pub(crate) fn accept(&mut self, socket: Box<dyn Socket>, metrics_listener: bool) -> ConnKey {
        let kind = if metrics_listener { Kind::MetricsHttp } else { Kind::Http };
        let key = self.e.insert(socket, kind);
        self.e.stats.accepted += 1;
        self.e.arm(key);
        key
    }

    /// Runs the connection `key`: reads and handles what arrived, writes what the socket would
    /// not take at once, and closes it when it is done. Ready once the connection is removed
    /// (its socket closed); the task then ends.
    pub(crate) fn drive(&mut self, key: ConnKey, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<()> {
        let mut reads = 0;
        loop {
            let Some(conn) = self.e.conn_mut(key) else { return Poll::Ready(()) };
            match &conn.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => conn.waker = Some(cx.waker().clone()),
            }
            if conn.has(flag::KILL) {
                self.remove(key);
                return Poll::Ready(());
            }
            if conn.has(flag::BLOCKED)
                && let Some(front) = conn.out.as_ref().and_then(|q| q.front()).cloned()
            {
                match conn.socket.poll_write(cx, &front) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.e.wrote_by_task(key, n);
                        // Writable again: the rest in vectored sends.
                        self.e.write_conn(key);
                        continue;
                    }
                    Poll::Ready(_) => {
                        conn.set(flag::KILL);
                        continue;
                    }
                    // Woken when writable; meanwhile keep reading unless paused.
                    Poll::Pending => {}
                }
            }
            let Some(conn) = self.e.conn_mut(key) else { return Poll::Ready(()) };
            if conn.has(flag::CLOSE_AFTER_FLUSH) {
                if conn.out.is_some() {
                    return Poll::Pending;
                }
                // Read and discard until the peer closes (or the close timeout kills us), so
                // that closing with unread input does not reset what we just sent.
                if !conn.has(flag::LINGER) {
                    conn.set(flag::LINGER);
                    let _ = conn.socket.shutdown_write();
                }
                match conn.socket.poll_read(cx, buf) {
                    Poll::Ready(Ok(n)) if n > 0 => continue,
                    Poll::Ready(_) => {
                        conn.set(flag::KILL);
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if conn.has(flag::READ_PAUSED) {
                return Poll::Pending;
            }
            if reads == READS_PER_TURN {
                // Let the other tasks run; come back at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match conn.socket.poll_read(cx, buf) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    reads += 1;
                    self.on_read(key, &mut buf[..n]);
                    self.settle();
                }
                // End of stream or a failed socket.
                Poll::Ready(_) => conn.set(flag::KILL),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Bytes arrived on a connection (in the core's read buffer, which may be modified).
    pub(crate) fn on_read(&mut self, key: ConnKey, input: &mut [u8]) {
        let Some(conn) = self.e.conn(key) else { return };
        if conn.has(flag::KILL) || conn.has(flag::CLOSE_AFTER_FLUSH) {
            return;
        }
        let phase = conn.phase;
        self.e.stats.bytes_in += input.len() as u64;
        match phase {
            Phase::Http => self.on_http_bytes(key, input),
            Phase::Open | Phase::Closing => self.on_ws_bytes(key, input),
        }
    }

    /// Forgets a connection: the service lets go of it, its entry and socket are dropped.
    pub(crate) fn remove(&mut self, key: ConnKey) {
        let Some(conn) = self.e.conn(key) else { return };
        if conn.kind == Kind::Service {
            self.s.closed(&mut self.e, key);
        }
        let conn = self.e.conns.remove(key.idx as usize);
        if conn.has(flag::COUNTED) {
            self.e.ws_count -= 1;
        }
        self.e.forget_queue(conn.queued_bytes());
        self.e.stats.closed += 1;
        self.settle();
    }

    /// A message from another core.
    pub(crate) fn on_peer(&mut self, from: CoreId, msg: S::Peer) {
        self.e.count_handled(from);
        self.s.peer(&mut self.e, msg);
        self.settle();
    }

    /// Runs `f` on the service (for messages from threads off the cores), then writes what it
    /// queued.
    pub(crate) fn with_service<R>(&mut self, f: impl FnOnce(&mut S, &mut Engine<S>) -> R) -> R {
        let r = f(&mut self.s, &mut self.e);
        self.settle();
        r
    }

    /// Advances the clock to `now` (seconds since the core started; `unix` is the wall clock)
    /// and handles every deadline that passed.
    pub(crate) fn tick(&mut self, now: u32, unix: i64) {
        self.e.unix_now = unix;
        while self.e.tick_one(now) {
            self.s.tick(&mut self.e);
        }
        self.settle();
    }

    /// Writes up to `budget` connections with output from fan-outs (see `Engine::flush`).
    pub(crate) fn flush(&mut self, budget: usize) -> Flushed {
        self.e.flush(budget)
    }

    /// Sets the millisecond clock (since the core started) that the entry point about to run
    /// sees; it orders the flusher's holds.
    pub(crate) fn set_clock_ms(&mut self, ms: u64) {
        self.e.clock_ms = ms;
    }

    /// Stops taking new WebSockets and says goodbye to every open one.
    pub(crate) fn start_drain(&mut self) {
        self.e.drain_all();
        self.settle();
    }

    /// Finishes an entry point: resumes requests whose deferred answer was sent, cuts off slow
    /// consumers, and writes the direct replies.
    fn settle(&mut self) {
        loop {
            while let Some(key) = self.e.resume.pop() {
                self.resume_requests(key);
            }
            self.e.handle_over_budget();
            if self.e.resume.is_empty() {
                break;
            }
        }
        self.e.flush_urgent();
    }
}
