//! The per-core state machine: every connection a core owns, its timers and its byte budget.
//!
//! The glommio driver (`shard/`) feeds it bytes read from sockets, clock ticks and messages from
//! other cores, and asks it what to write. It performs no I/O of its own except non-blocking
//! sends through `SocketIo`, which lets a broadcast or a reply leave without waking the
//! receiving connection's task.
//!
//! Architecture Invariant: `core/` never imports glommio and never blocks. It is single-threaded:
//! one `Core` per shard, reached only from that shard's thread.

pub mod conn;
pub mod io;
pub mod outq;
pub mod stats;
pub mod wheel;

mod http_phase;
mod timers;
mod ws_phase;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use slab::Slab;

use crate::config::Config;
use crate::protocol::decoder::Limits;
use crate::protocol::frame;
use conn::{Conn, ConnKey, Endpoint, Phase, flag};
use io::SocketIo;
use outq::OutQueue;
use stats::Stats;
use wheel::Wheel;

/// What a core needs from the configuration, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub max_connections: usize,
    pub max_outbound_bytes: usize,
    pub max_body: usize,
    pub echo: bool,
    pub handshake_timeout: u32,
    pub activity_timeout: u32,
    pub pong_timeout: u32,
    pub close_timeout: u32,
    pub drain_timeout: u32,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            limits: Limits { max_frame: cfg.max_frame_size, max_message: cfg.max_message_size },
            max_connections: cfg.per_core_max_connections(),
            max_outbound_bytes: cfg.max_outbound_bytes,
            max_body: 100 * 1024,
            echo: cfg.echo,
            handshake_timeout: cfg.handshake_timeout,
            activity_timeout: cfg.activity_timeout,
            pong_timeout: cfg.pong_timeout,
            close_timeout: cfg.close_timeout,
            drain_timeout: cfg.drain_timeout,
        }
    }
}

/// What the connection's task should do next.
#[derive(Debug)]
pub enum TaskView {
    /// Close the socket and end the task.
    Exit,
    /// Write these bytes (the front of the queue), then ask again.
    Write(Bytes),
    /// Nothing to write: shut down the write side (once), then read and discard until EOF.
    Linger { shut_down: bool },
    /// Nothing to write: read.
    Read,
    /// Nothing to write and reading is paused: wait to be woken.
    Wait,
}

pub struct Core {
    pub shard: u32,
    pub settings: Settings,
    conns: Slab<Conn>,
    io: Box<dyn SocketIo>,
    wheel: Wheel,
    due: Vec<wheel::Entry>,
    /// Coarse clock in seconds, advanced by `tick`.
    now: u32,
    next_gen: u32,
    ws_count: usize,
    draining: bool,
    pub stats: Stats,
}

impl Core {
    pub fn new(shard: u32, settings: Settings, io: Box<dyn SocketIo>, now: u32) -> Core {
        Core {
            shard,
            settings,
            conns: Slab::new(),
            io,
            wheel: Wheel::new(512, now),
            due: Vec::new(),
            now,
            next_gen: 1,
            ws_count: 0,
            draining: false,
            stats: Stats::default(),
        }
    }

    /// Registers an accepted socket and starts its handshake timeout.
    pub fn accept(&mut self, fd: i32) -> ConnKey {
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let idx = self.conns.insert(Conn::new(fd, generation, self.now)) as u32;
        let key = ConnKey { idx, generation };
        self.stats.accepted += 1;
        self.arm(key);
        key
    }

    /// Bytes arrived on a connection (in the core's read buffer, which may be modified).
    pub fn on_read(&mut self, key: ConnKey, input: &mut [u8]) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.has(flag::KILL) || conn.has(flag::CLOSE_AFTER_FLUSH) {
            return;
        }
        let phase = conn.phase;
        self.stats.bytes_in += input.len() as u64;
        match phase {
            Phase::Http => self.on_http_bytes(key, input),
            Phase::Open | Phase::Closing => self.on_ws_bytes(key, input),
        }
    }

    /// The peer closed its side or the socket failed.
    pub fn on_eof(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.set(flag::KILL);
        }
    }

    /// The connection's task has ended and its socket is being closed: forget it.
    pub fn remove(&mut self, key: ConnKey) {
        if self.conn(key).is_none() {
            return;
        }
        let conn = self.conns.remove(key.idx as usize);
        if conn.has(flag::COUNTED) {
            self.ws_count -= 1;
        }
        self.stats.closed += 1;
    }

    /// What the connection's task should do now. Registers `waker` for later wake-ups.
    pub fn task_view(&mut self, key: ConnKey, waker: &std::task::Waker) -> TaskView {
        let Some(conn) = self.conn_mut(key) else { return TaskView::Exit };
        match &conn.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => conn.waker = Some(waker.clone()),
        }
        if conn.has(flag::KILL) {
            return TaskView::Exit;
        }
        if let Some(front) = conn.out.as_ref().and_then(|q| q.front()) {
            return TaskView::Write(front.clone());
        }
        if conn.has(flag::CLOSE_AFTER_FLUSH) {
            let shut_down = conn.has(flag::LINGER);
            conn.set(flag::LINGER);
            return TaskView::Linger { shut_down };
        }
        if conn.has(flag::READ_PAUSED) {
            return TaskView::Wait;
        }
        TaskView::Read
    }

    /// The task wrote `n` bytes of the queue's front.
    pub fn wrote(&mut self, key: ConnKey, n: usize) {
        let resume_below = self.settings.max_outbound_bytes / 2;
        let Some(conn) = self.conn_mut(key) else { return };
        let q = conn.out.as_mut().expect("wrote only what was queued");
        q.advance(n);
        let left = q.bytes();
        if q.is_empty() {
            conn.out = None;
        }
        if left <= resume_below {
            conn.clear(flag::READ_PAUSED);
        }
        self.stats.bytes_out += n as u64;
    }

    /// Sends `bytes` on a connection: straight to the socket when nothing is queued, else queued
    /// (waking the task to write when the socket takes more).
    pub fn send(&mut self, key: ConnKey, bytes: Bytes) {
        let Some(conn) = self.conns.get_mut(key.idx as usize).filter(|c| c.generation == key.generation)
        else {
            return;
        };
        if conn.has(flag::KILL) {
            return;
        }
        self.stats.frames_out += 1;
        let mut rest = bytes;
        if conn.out.is_none() {
            match self.io.send(conn.fd, &rest) {
                Ok(n) if n == rest.len() => {
                    self.stats.bytes_out += n as u64;
                    return;
                }
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    rest = rest.slice(n..);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    conn.set(flag::KILL);
                    conn.wake();
                    return;
                }
            }
        }
        let was_empty = conn.out.is_none();
        let q = conn.out.get_or_insert_with(|| Box::new(OutQueue::default()));
        q.push(rest);
        let queued = q.bytes();
        if was_empty {
            conn.wake();
        }
        if queued > self.settings.max_outbound_bytes {
            self.over_budget(key);
        }
    }

    /// A connection's queue went over `max_outbound_bytes`.
    fn over_budget(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else { return };
        match conn.endpoint {
            // The peer reads slower than it sends: stop reading until it catches up.
            Endpoint::Echo | Endpoint::None => conn.set(flag::READ_PAUSED),
            // A subscriber that does not keep up is cut off rather than buffered without bound.
            Endpoint::Pusher => {
                conn.out = None;
                self.stats.slow_consumers += 1;
                self.close_ws(key, 4100, "Over capacity: client is not reading fast enough");
                if let Some(conn) = self.conn_mut(key) {
                    conn.set(flag::CLOSE_AFTER_FLUSH);
                }
            }
        }
    }

    /// Sends a close frame and waits for the peer's (up to the close or drain timeout).
    pub fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.phase != Phase::Open {
            return;
        }
        conn.phase = Phase::Closing;
        conn.clear(flag::PING_SENT);
        self.send(key, frame::encode_close(code, reason));
        self.enter_closing(key);
    }

    /// Marks the connection to be closed once its queue is written, with a timeout.
    pub fn close_after_flush(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.set(flag::CLOSE_AFTER_FLUSH);
            conn.wake();
            self.enter_closing(key);
        }
    }

    fn enter_closing(&mut self, key: ConnKey) {
        let now = self.now;
        if let Some(conn) = self.conn_mut(key) {
            conn.phase = Phase::Closing;
            conn.last_seen = now;
        }
        self.rearm_if_sooner(key);
    }

    /// Stops taking new WebSockets and sends every open one close 1001.
    pub fn start_drain(&mut self) {
        self.draining = true;
        let keys: Vec<ConnKey> =
            self.conns.iter().map(|(idx, c)| ConnKey { idx: idx as u32, generation: c.generation }).collect();
        for key in keys {
            // Open WebSockets are told to go; HTTP connections finish their request and are
            // answered with `Connection: close` (upgrades with 503).
            if self.conn(key).is_some_and(|c| c.phase == Phase::Open) {
                self.close_ws(key, 1001, "server shutting down");
            }
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// WebSocket connections this core holds.
    pub fn ws_count(&self) -> usize {
        self.ws_count
    }

    /// Connections of any kind this core holds.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    pub fn now(&self) -> u32 {
        self.now
    }

    pub fn conn(&self, key: ConnKey) -> Option<&Conn> {
        self.conns.get(key.idx as usize).filter(|c| c.generation == key.generation)
    }

    pub fn conn_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        self.conns.get_mut(key.idx as usize).filter(|c| c.generation == key.generation)
    }

    /// Bytes the core's per-connection structures use (slab capacity, heap extras, timers).
    pub fn accounted_bytes(&self) -> usize {
        self.conns.capacity() * std::mem::size_of::<Conn>()
            + self.conns.iter().map(|(_, c)| c.heap_bytes()).sum::<usize>()
            + self.wheel.len() * std::mem::size_of::<wheel::Entry>()
    }
}
