//! The engine: a core's connections, clock, counters, write path and links to other cores —
//! everything a service reaches through `&mut Engine` while it handles a request or a message.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::Bytes;
use slab::Slab;

use super::conn::{Conn, ConnKey, Kind, Phase, flag};
use super::io::{CoreId, PeerLink};
use super::outq::OutQueue;
use super::service::{Goodbye, Policy, Service};
use super::stats::Stats;
use super::wheel::{self, Wheel};
use crate::protocol::decoder::Limits;
use crate::protocol::deflate::{CompressedFrame, Deflater, Inflater};
use crate::protocol::frame::{self, Opcode};

/// What a core needs to know, resolved once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Frame and message size limits for clients.
    pub(crate) limits: Limits,
    /// WebSockets this core holds at most.
    pub(crate) max_connections: usize,
    /// Bytes queued for one connection before the service's slow-consumer policy applies.
    pub(crate) max_outbound_bytes: usize,
    /// Largest HTTP request body.
    pub(crate) max_body: usize,
    /// Serve `/echo`.
    pub(crate) echo: bool,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it.
    pub(crate) deflate: bool,
    /// Seconds to send a request head.
    pub(crate) handshake_timeout: u32,
    /// Seconds of silence before a heartbeat ping.
    pub(crate) activity_timeout: u32,
    /// Seconds to answer a ping.
    pub(crate) pong_timeout: u32,
    /// Seconds to wait for the peer's close frame.
    pub(crate) close_timeout: u32,
    /// Seconds to wait for peers to close while draining.
    pub(crate) drain_timeout: u32,
    /// Cores in this process.
    pub(crate) cores: u16,
    /// Messages a core may queue for one peer beyond its ring before broadcasts are dropped.
    pub(crate) outbox_limit: usize,
    /// Bytes queued on all of this core's connections above which the service should push back
    /// on new publishes.
    pub(crate) backlog_limit: usize,
    /// Milliseconds a connection's due fan-out frames wait for more to join them, once the
    /// flusher has had a backlog for that long (0: written as soon as the flusher gets to them).
    pub(crate) coalesce_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            max_connections: 1_000_000,
            max_outbound_bytes: 256 * 1024,
            max_body: 100 * 1024,
            echo: false,
            deflate: false,
            handshake_timeout: 10,
            activity_timeout: 120,
            pong_timeout: 30,
            close_timeout: 5,
            drain_timeout: 10,
            cores: 1,
            outbox_limit: 4096 * 16,
            backlog_limit: 512 * 1024 * 1024,
            coalesce_ms: 0,
        }
    }
}

/// A connection on the flusher's list, and when it got there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    pub(crate) key: ConnKey,
    /// `clock_ms` when the connection became dirty.
    pub(crate) at_ms: u64,
}

/// The engine half of a core (see the module docs).
pub(crate) struct Engine<S: Service> {
    shard: CoreId,
    settings: Settings,
    pub(crate) conns: Slab<Conn<S::Conn>>,
    pub(crate) wheel: Wheel,
    pub(crate) due: Vec<wheel::Entry>,
    /// Coarse clock in seconds, advanced by `tick`.
    pub(crate) now: u32,
    /// Wall-clock Unix seconds at the last tick.
    pub(crate) unix_now: i64,
    next_gen: u32,
    pub(crate) ws_count: usize,
    pub(crate) draining: bool,
    /// This core's counters.
    pub(crate) stats: Stats,
    pub(crate) policy: Policy,
    /// Connections with output for the flusher, in the order they became due.
    pub(crate) dirty: VecDeque<Due>,
    /// Milliseconds since the core started, as of the current entry point (see `set_clock_ms`).
    pub(crate) clock_ms: u64,
    /// When (`clock_ms`) the dirty list last became non-empty.
    pub(crate) backlog_since: u64,
    /// Connections to write before the current entry point returns (direct replies).
    pub(crate) urgent: Vec<ConnKey>,
    /// Bytes queued on all connections.
    pub(crate) queued: usize,
    /// The flusher task, woken when the first connection becomes dirty.
    pub(crate) flusher: Option<Waker>,
    /// HTTP connections whose deferred response was sent: go on with their pipelined input.
    pub(crate) resume: Vec<ConnKey>,
    /// Connections whose queue went over `max_outbound_bytes`.
    pub(crate) over_budget: Vec<ConnKey>,
    /// Messages for each other core, in order, until the mesh pump sends them.
    pub(crate) outbox: Vec<VecDeque<S::Peer>>,
    pub(crate) outbox_waker: Option<Waker>,
    pub(crate) peer_link: Option<Box<dyn PeerLink<S::Peer>>>,
    /// Per peer: the mesh pump holds a message it waits to send (order: no bypass).
    pub(crate) pump_holding: Vec<bool>,
    /// Per peer: messages from its ring this core has handled.
    pub(crate) handled: Vec<u64>,
    /// Emptied output queues kept for reuse (a fan-out pass would otherwise allocate and free
    /// one per subscriber). Boxed because a connection holds its queue boxed.
    #[allow(clippy::vec_box)]
    pub(crate) spare_queues: Vec<Box<OutQueue>>,
    /// The core's inflater for compressed client messages (made on first use).
    pub(crate) inflater: Option<Box<Inflater>>,
    /// The core's compressor for frames to connections that negotiated compression (made on
    /// first use).
    deflater: Option<Box<Deflater>>,
    /// A fast compressor for messages meant for one connection (the echo endpoint's replies),
    /// where time matters more than bytes (made on first use).
    fast_deflater: Option<Box<Deflater>>,
}

impl<S: Service> Engine<S> {
    pub(crate) fn new(shard: CoreId, settings: Settings, policy: Policy, now: u32) -> Engine<S> {
        let cores = usize::from(settings.cores.max(1));
        Engine {
            shard,
            settings,
            conns: Slab::new(),
            wheel: Wheel::new(512, now),
            due: Vec::new(),
            now,
            unix_now: 0,
            next_gen: 1,
            ws_count: 0,
            draining: false,
            stats: Stats::default(),
            policy,
            dirty: VecDeque::new(),
            clock_ms: 0,
            backlog_since: 0,
            urgent: Vec::new(),
            queued: 0,
            flusher: None,
            resume: Vec::new(),
            over_budget: Vec::new(),
            outbox: (0..cores).map(|_| VecDeque::new()).collect(),
            outbox_waker: None,
            peer_link: None,
            pump_holding: vec![false; cores],
            handled: vec![0; cores],
            spare_queues: Vec::new(),
            inflater: None,
            deflater: None,
            fast_deflater: None,
        }
    }

    /// This core.
    pub(crate) fn shard(&self) -> CoreId {
        self.shard
    }

    /// The core's settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Coarse clock, in seconds since the core started.
    pub(crate) fn now(&self) -> u32 {
        self.now
    }

    /// Wall-clock Unix seconds as of the last tick.
    pub(crate) fn unix_now(&self) -> i64 {
        self.unix_now
    }

    /// Whether the core is draining (shutting down).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining
    }

    /// WebSocket connections this core holds (counted ones).
    pub(crate) fn ws_count(&self) -> usize {
        self.ws_count
    }

    /// Connections of any kind this core holds.
    pub(crate) fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes queued on all of this core's connections.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether this core's queued output is over the backlog limit (the service should push
    /// back on new work).
    pub(crate) fn backlogged(&self) -> bool {
        self.queued > self.settings.backlog_limit
    }

    /// The connection `key`, if it still exists.
    pub(crate) fn conn(&self, key: ConnKey) -> Option<&Conn<S::Conn>> {
        self.conns.get(key.idx as usize).filter(|c| c.generation == key.generation)
    }

    /// The connection `key`, if it still exists.
    pub(crate) fn conn_mut(&mut self, key: ConnKey) -> Option<&mut Conn<S::Conn>> {
        self.conns.get_mut(key.idx as usize).filter(|c| c.generation == key.generation)
    }

    /// The connection in slot `idx`, whichever it is.
    pub(crate) fn conn_at(&self, idx: u32) -> Option<(ConnKey, &Conn<S::Conn>)> {
        self.conns.get(idx as usize).map(|c| (c.key(idx), c))
    }

    /// Every connection's key.
    pub(crate) fn keys(&self) -> Vec<ConnKey> {
        self.conns.iter().map(|(idx, c)| c.key(idx as u32)).collect()
    }

    pub(crate) fn insert(&mut self, socket: Box<dyn super::io::Socket>, kind: Kind) -> ConnKey {
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let idx = self.conns.insert(Conn::new(socket, generation, self.now, kind));
        ConnKey { idx: u32::try_from(idx).expect("fewer than 2^32 connections per core"), generation }
    }

    /// Queues `bytes` for `key` and writes them before the current entry point returns (a
    /// direct reply: it goes out at once, after anything already due to that connection).
    pub(crate) fn send(&mut self, key: ConnKey, bytes: Bytes) {
        if self.conn(key).is_some() && self.enqueue(key.idx, &bytes) {
            self.urgent.push(key);
        }
    }

    /// Queues `frame` for the connection in slot `idx` (fan-out): it is written by the flusher,
    /// together with whatever else is due to that connection in this turn. False if the
    /// connection takes nothing more (closing or gone).
    /// When the event also exists compressed, a connection that negotiated permessage-deflate
    /// (with a window that fits) gets `compressed` instead.
    pub(crate) fn push(&mut self, idx: u32, frame: &Bytes, compressed: Option<&CompressedFrame>) -> bool {
        let plain_len = frame.len();
        let frame = match (compressed, self.conns.get(idx as usize).and_then(|c| c.deflate)) {
            (Some(c), Some(n)) if n.accepts(c.window_bits) => &c.frame,
            _ => frame,
        };
        if !self.enqueue(idx, frame) {
            return false;
        }
        if frame.len() < plain_len {
            self.stats.deflate_frames += 1;
            self.stats.deflate_bytes_saved += (plain_len - frame.len()) as u64;
        }
        let conn = &mut self.conns[idx as usize];
        if !conn.has(flag::DIRTY) && !conn.has(flag::BLOCKED) {
            conn.set(flag::DIRTY);
            let key = conn.key(idx);
            if self.dirty.is_empty() {
                self.backlog_since = self.clock_ms;
                if let Some(w) = &self.flusher {
                    w.wake_by_ref();
                }
            }
            self.dirty.push_back(Due { key, at_ms: self.clock_ms });
        }
        true
    }

    /// Appends `bytes` to the connection's queue; false when it takes nothing more.
    fn enqueue(&mut self, idx: u32, bytes: &Bytes) -> bool {
        let max = self.settings.max_outbound_bytes;
        let Some(conn) = self.conns.get_mut(idx as usize) else { return false };
        // Nothing follows our close frame (RFC 6455 §5.5.1) or a final HTTP response.
        if conn.has(flag::KILL) || conn.has(flag::CLOSE_AFTER_FLUSH) || conn.phase == Phase::Closing {
            return false;
        }
        let spare = &mut self.spare_queues;
        let q = conn.out.get_or_insert_with(|| spare.pop().unwrap_or_default());
        q.push(bytes.clone());
        self.queued = self.queued.saturating_add(bytes.len());
        if q.bytes() > max {
            let key = conn.key(idx);
            self.over_budget.push(key);
        }
        true
    }

    /// Queues the farewell frames and the close frame, bypassing the budget (they are what
    /// ends it), then waits for the peer's close.
    fn send_goodbye(&mut self, key: ConnKey, g: &Goodbye) {
        if let Some(notice) = &g.notice {
            self.send(key, notice.clone());
        }
        self.close_ws(key, g.code, g.reason);
    }

    /// Sends a close frame and waits for the peer's (up to the close or drain timeout).
    pub(crate) fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.phase != Phase::Open {
            return;
        }
        conn.clear(flag::PING_SENT);
        self.send(key, frame::encode_close(code, reason));
        self.enter_closing(key);
    }

    /// Fails the connection (RFC 6455 §7.1.7): a close frame with `code`, then the socket closes
    /// without waiting for the peer's close (its frames cannot be parsed further).
    pub(crate) fn fail(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conn(key) else { return };
        if conn.phase == Phase::Open {
            self.send(key, frame::encode_close(code, reason));
        }
        self.close_after_flush(key);
    }

    /// Closes the connection once its queue is written, with a timeout; nothing more is sent.
    pub(crate) fn close_after_flush(&mut self, key: ConnKey) {
        if let Some(conn) = self.conn_mut(key) {
            conn.set(flag::CLOSE_AFTER_FLUSH);
            conn.wake();
            self.enter_closing(key);
        }
    }

    /// Sends a final HTTP response and closes after it.
    pub(crate) fn respond_and_close(&mut self, key: ConnKey, resp: Bytes) {
        if resp.get(9..12).is_some_and(|s| s[0] >= b'4') {
            self.stats.http_errors += 1;
        }
        self.send(key, resp);
        self.close_after_flush(key);
    }

    /// Lets a connection whose request the service held (`Outcome::Hold`) go on: the request is
    /// presented again.
    pub(crate) fn release_held(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.has_deferred() {
            conn.set_deferred(false);
            self.resume.push(key);
        }
    }

    /// Sends the response of a request that waited (`Outcome::Deferred`); the connection then
    /// goes on with what the client sent meanwhile.
    pub(crate) fn finish_deferred(&mut self, key: ConnKey, resp: Bytes, keep_alive: bool) {
        let Some(conn) = self.conn_mut(key) else { return };
        if !conn.has_deferred() {
            return;
        }
        conn.set_deferred(false);
        if !keep_alive || self.draining {
            return self.respond_and_close(key, resp);
        }
        self.send(key, resp);
        let now = self.now;
        if let Some(conn) = self.conn_mut(key) {
            conn.last_seen = now;
        }
        self.resume.push(key);
    }

    fn enter_closing(&mut self, key: ConnKey) {
        let now = self.now;
        if let Some(conn) = self.conn_mut(key) {
            conn.phase = Phase::Closing;
            conn.last_seen = now;
        }
        self.rearm_if_sooner(key);
    }

    /// Applies the slow-consumer policy to the connections whose queue went over budget.
    pub(crate) fn handle_over_budget(&mut self) {
        while let Some(key) = self.over_budget.pop() {
            let max = self.settings.max_outbound_bytes;
            let Some(conn) = self.conn_mut(key) else { continue };
            if conn.queued_bytes() <= max {
                continue;
            }
            let disconnect = match conn.kind {
                Kind::Service => self.policy.slow_consumer.clone(),
                _ => None,
            };
            let Some(conn) = self.conn_mut(key) else { continue };
            let Some(goodbye) = disconnect else {
                // The peer reads slower than it sends: stop reading until it catches up.
                conn.set(flag::READ_PAUSED);
                continue;
            };
            if conn.phase != Phase::Open {
                continue;
            }
            // A subscriber that does not keep up is cut off rather than buffered without bound.
            if let Some(q) = conn.out.as_mut() {
                let before = q.bytes();
                q.clear_unstarted();
                let dropped = before - q.bytes();
                if q.is_empty() {
                    conn.out = None;
                }
                self.queued = self.queued.saturating_sub(dropped);
            }
            self.stats.slow_consumers += 1;
            self.send_goodbye(key, &goodbye);
            self.close_after_flush(key);
        }
    }

    /// Closes every open WebSocket with the service's (or the echo) draining goodbye.
    pub(crate) fn drain_all(&mut self) {
        self.draining = true;
        for key in self.keys() {
            // Open WebSockets are told to go; HTTP connections finish their request and are
            // answered with `Connection: close` (upgrades with 503).
            let Some(conn) = self.conn(key) else { continue };
            if conn.phase == Phase::Open {
                let goodbye = self.goodbye_for(conn.kind, GoodbyeKind::Draining);
                self.send_goodbye(key, &goodbye);
            }
        }
    }

    /// Heartbeat: no reply to our ping in time.
    pub(crate) fn heartbeat_failed(&mut self, key: ConnKey) {
        self.stats.ping_timeouts += 1;
        if let Some(conn) = self.conn(key)
            && conn.phase == Phase::Open
        {
            // The peer is presumed dead: tell it why if it is not, but do not wait for it.
            let goodbye = self.goodbye_for(conn.kind, GoodbyeKind::PongTimeout);
            if let Some(notice) = goodbye.notice {
                self.send(key, notice);
            }
            self.send(key, frame::encode_close(goodbye.code, goodbye.reason));
        }
        self.close_after_flush(key);
    }

    /// Heartbeat: the connection was silent for the activity timeout.
    pub(crate) fn send_heartbeat_ping(&mut self, key: ConnKey) {
        let Some(conn) = self.conn(key) else { return };
        let ping = match conn.kind {
            Kind::Service => self.policy.ping.clone(),
            _ => Bytes::from_static(&[0x89, 0x00]),
        };
        self.send(key, ping);
    }

    fn goodbye_for(&self, kind: Kind, which: GoodbyeKind) -> Goodbye {
        match (kind, which) {
            (Kind::Service, GoodbyeKind::Draining) => self.policy.draining.clone(),
            (Kind::Service, GoodbyeKind::PongTimeout) => self.policy.pong_timeout.clone(),
            (_, GoodbyeKind::Draining) => {
                Goodbye { notice: None, code: 1001, reason: "server shutting down" }
            }
            (_, GoodbyeKind::PongTimeout) => Goodbye { notice: None, code: 1001, reason: "no reply to ping" },
        }
    }

    /// Bytes the core's per-connection structures use (slab capacity, heap extras, timers).
    pub(crate) fn accounted_bytes(&self) -> usize {
        self.conns.capacity() * std::mem::size_of::<Conn<S::Conn>>()
            + self.conns.iter().map(|(_, c)| c.heap_bytes()).sum::<usize>()
            + self.wheel.len() * std::mem::size_of::<wheel::Entry>()
    }

    /// `payload` as one compressed frame, when compression is on and that is smaller than the
    /// plain frame: what a publish sends to the connections that negotiated permessage-deflate
    /// (compressed once, shared by all of them).
    pub(crate) fn compress(&mut self, opcode: Opcode, payload: &[u8]) -> Option<CompressedFrame> {
        if !self.settings.deflate {
            return None;
        }
        self.deflater.get_or_insert_with(|| Box::new(Deflater::new())).frame_if_smaller(opcode, payload)
    }

    /// A frame for one connection: compressed (within its window) if it negotiated
    /// permessage-deflate, else plain (the echo endpoint's replies mirror what the client
    /// negotiated).
    pub(crate) fn frame_for(&mut self, key: ConnKey, opcode: Opcode, payload: &[u8]) -> Bytes {
        match self.conn(key).and_then(|c| c.deflate) {
            Some(n) => {
                let d = self.fast_deflater.get_or_insert_with(|| Box::new(Deflater::with_level(1)));
                d.frame_within(opcode, payload, n.server_max_window_bits()).frame
            }
            None => frame::encode(opcode, payload),
        }
    }

    /// Accounts for a connection's queue going away with it.
    pub(crate) fn forget_queue(&mut self, bytes: usize) {
        self.queued = self.queued.saturating_sub(bytes);
    }
}

#[derive(Clone, Copy)]
enum GoodbyeKind {
    Draining,
    PongTimeout,
}
