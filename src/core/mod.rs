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

pub(crate) mod http_phase;
mod timers;
mod ws_phase;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::Bytes;
use slab::Slab;

use crate::config::Config;
use crate::protocol::decoder::Limits;
use crate::protocol::frame;
use crate::pusher::PusherState;
use crate::pusher::apps::App;
use crate::pusher::peer::PeerMsg;
use crate::pusher::socket_id::SocketRef;
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
    pub apps: Vec<App>,
    /// This node's id in socket ids.
    pub node: u32,
    /// Cores in this process.
    pub shards: u32,
    /// Messages a core may queue for one peer beyond its ring before dropping broadcasts.
    pub outbox_limit: usize,
}

impl Settings {
    /// Settings for one of `cfg.executor_count()` cores of node `node`.
    pub fn from_config(cfg: &Config, node: u32) -> Settings {
        Settings {
            limits: Limits { max_frame: cfg.max_frame_size, max_message: cfg.max_message_size },
            max_connections: cfg.per_core_max_connections(),
            max_outbound_bytes: cfg.max_outbound_bytes,
            max_body: cfg.max_body_size,
            echo: cfg.echo,
            handshake_timeout: cfg.handshake_timeout,
            activity_timeout: cfg.activity_timeout,
            pong_timeout: cfg.pong_timeout,
            close_timeout: cfg.close_timeout,
            drain_timeout: cfg.drain_timeout,
            apps: cfg.apps.clone(),
            node,
            shards: cfg.executor_count() as u32,
            outbox_limit: cfg.ring_capacity * 16,
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
    pub(crate) conns: Slab<Conn>,
    pub(crate) io: Box<dyn SocketIo>,
    wheel: Wheel,
    due: Vec<wheel::Entry>,
    /// Coarse clock in seconds, advanced by `tick`.
    pub(crate) now: u32,
    /// Wall-clock Unix seconds at the last tick (HTTP API timestamps, webhook times).
    pub(crate) unix_now: i64,
    next_gen: u32,
    pub(crate) ws_count: usize,
    pub(crate) draining: bool,
    pub stats: Stats,
    pub(crate) pusher: PusherState,
    /// Messages for each other core, in order, until the shard's mesh pump sends them.
    pub(crate) outbox: Vec<VecDeque<PeerMsg>>,
    outbox_waker: Option<std::task::Waker>,
    /// Direct access to the rings (once the mesh is connected).
    peer_link: Option<Box<dyn io::PeerLink>>,
    /// Per peer: the mesh pump holds a message it is waiting to send (order: no bypass).
    pump_holding: Vec<bool>,
    /// This core's ring to the webhook dispatcher (when any app has webhooks).
    pub(crate) webhooks: Option<crate::webhooks::Sink>,
    /// This core's ring to the Redis bridge (with --redis).
    pub(crate) cluster: Option<crate::cluster::ring::Tx<crate::cluster::ClusterOut>>,
}

/// What happened to a frame offered to a connection.
pub(crate) enum Pushed {
    Done,
    /// Queued; the queue now holds this many bytes.
    Queued(usize),
    Dead,
}

/// Sends `bytes` on `conn` straight to the socket when nothing is queued, else queues it (waking
/// the task when the queue was empty). A free function over the fields it needs, so that fan-out
/// can call it while iterating a channel's subscribers.
pub(crate) fn push_frame(conn: &mut Conn, io: &dyn SocketIo, stats: &mut Stats, bytes: &Bytes) -> Pushed {
    // Nothing follows our close frame (RFC 6455 §5.5.1) or a final HTTP response.
    if conn.has(flag::KILL) || conn.has(flag::CLOSE_AFTER_FLUSH) || conn.phase == Phase::Closing {
        return Pushed::Dead;
    }
    stats.frames_out += 1;
    let mut offset = 0;
    if conn.out.is_none() {
        match io.send(conn.fd, bytes) {
            Ok(n) if n == bytes.len() => {
                stats.bytes_out += n as u64;
                return Pushed::Done;
            }
            Ok(n) => {
                stats.bytes_out += n as u64;
                offset = n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                conn.set(flag::KILL);
                conn.wake();
                return Pushed::Dead;
            }
        }
    }
    let was_empty = conn.out.is_none();
    let q = conn.out.get_or_insert_with(|| Box::new(OutQueue::default()));
    if offset == 0 {
        q.push(bytes.clone());
    } else {
        q.push_rest(bytes.slice(offset..));
    }
    let queued = q.bytes();
    if was_empty {
        conn.wake();
    }
    Pushed::Queued(queued)
}

impl Core {
    pub fn new(shard: u32, settings: Settings, io: Box<dyn SocketIo>, now: u32) -> Core {
        let shards = settings.shards.max(1) as usize;
        let pusher = PusherState::new(&settings.apps);
        Core {
            shard,
            settings,
            conns: Slab::new(),
            io,
            wheel: Wheel::new(512, now),
            due: Vec::new(),
            now,
            unix_now: 0,
            next_gen: 1,
            ws_count: 0,
            draining: false,
            stats: Stats::default(),
            pusher,
            outbox: (0..shards).map(|_| VecDeque::new()).collect(),
            outbox_waker: None,
            peer_link: None,
            pump_holding: vec![false; shards],
            webhooks: None,
            cluster: None,
        }
    }

    /// Connects this core to the Redis bridge.
    pub fn set_cluster(&mut self, tx: crate::cluster::ring::Tx<crate::cluster::ClusterOut>) {
        self.cluster = Some(tx);
    }

    /// Connects this core to the webhook dispatcher.
    pub fn set_webhook_sink(&mut self, sink: Option<crate::webhooks::Sink>) {
        self.webhooks = sink;
    }

    /// Where connection `key` lives, for socket ids and cross-core replies.
    pub fn socket_ref(&self, key: ConnKey) -> SocketRef {
        SocketRef { node: self.settings.node, shard: self.shard, key }
    }

    /// Connects the core to the rings for direct hand-offs.
    pub fn set_peer_link(&mut self, link: Box<dyn io::PeerLink>) {
        self.peer_link = Some(link);
    }

    /// Records whether the mesh pump holds a message for `peer` while waiting for ring room.
    pub fn set_pump_holding(&mut self, peer: usize, holding: bool) {
        self.pump_holding[peer] = holding;
    }

    /// Sends `msg` to core `peer` (never this core): straight onto its ring when nothing for it
    /// is waiting, else queued behind what is, in order.
    pub(crate) fn send_to_peer(&mut self, peer: u32, msg: PeerMsg) {
        debug_assert_ne!(peer, self.shard);
        let msg = match &self.peer_link {
            Some(link) if self.outbox[peer as usize].is_empty() && !self.pump_holding[peer as usize] => {
                match link.try_send(peer, msg) {
                    Ok(()) => return,
                    Err(msg) => msg,
                }
            }
            _ => msg,
        };
        let q = &mut self.outbox[peer as usize];
        q.push_back(msg);
        if q.len() == 1
            && let Some(w) = &self.outbox_waker
        {
            w.wake_by_ref();
        }
    }

    /// Whether the queue towards `peer` is over its limit (broadcasts are then dropped).
    pub(crate) fn peer_backlogged(&self, peer: u32) -> bool {
        self.outbox[peer as usize].len() >= self.settings.outbox_limit
    }

    /// The shard's mesh pump takes the next message for `peer`, registering `waker` to be woken
    /// when there is more.
    pub fn next_for_peer(&mut self, peer: usize) -> Option<PeerMsg> {
        self.outbox.get_mut(peer)?.pop_front()
    }

    /// Registers the mesh pump's waker; true if any message waits.
    pub fn pending_for_peers(&mut self, waker: &std::task::Waker) -> bool {
        match &self.outbox_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.outbox_waker = Some(waker.clone()),
        }
        self.outbox.iter().any(|q| !q.is_empty())
    }

    /// Registers a socket accepted on the metrics listener.
    pub fn accept_metrics(&mut self, fd: i32) -> ConnKey {
        let key = self.accept(fd);
        if let Some(conn) = self.conn_mut(key) {
            conn.endpoint = Endpoint::Metrics;
        }
        key
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
        let Some(conn) = self.conn(key) else { return };
        if conn.endpoint == Endpoint::Pusher {
            self.pusher_close(key);
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
        if let Pushed::Queued(queued) = push_frame(conn, &*self.io, &mut self.stats, &bytes)
            && queued > self.settings.max_outbound_bytes
        {
            self.over_budget(key);
        }
    }

    /// A connection's queue went over `max_outbound_bytes`.
    pub(crate) fn over_budget(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get_mut(key.idx as usize).filter(|c| c.generation == key.generation)
        else {
            return;
        };
        match conn.endpoint {
            // The peer reads slower than it sends: stop reading until it catches up.
            Endpoint::Echo | Endpoint::None | Endpoint::Metrics => conn.set(flag::READ_PAUSED),
            // A subscriber that does not keep up is cut off rather than buffered without bound.
            Endpoint::Pusher => {
                if conn.phase != Phase::Open {
                    return;
                }
                if let Some(q) = conn.out.as_mut() {
                    q.clear_unstarted();
                    if q.is_empty() {
                        conn.out = None;
                    }
                }
                // The farewell frames bypass the budget (they are what ends it).
                let why = "Over capacity: client is not reading fast enough";
                for frame in
                    [crate::pusher::messages::error(Some(4100), why, None), frame::encode_close(4100, why)]
                {
                    push_frame(conn, &*self.io, &mut self.stats, &frame);
                }
                self.stats.slow_consumers += 1;
                self.close_after_flush(key);
            }
        }
    }

    /// Sends a close frame and waits for the peer's (up to the close or drain timeout).
    pub fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.phase != Phase::Open {
            return;
        }
        conn.clear(flag::PING_SENT);
        // The close frame is the last frame sent: queue it, then enter Closing.
        self.send(key, frame::encode_close(code, reason));
        self.enter_closing(key);
    }

    /// Marks the connection to be closed once its queue is written, with a timeout. Nothing
    /// more is sent on it.
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
            let Some(conn) = self.conn(key) else { continue };
            if conn.phase == Phase::Open {
                if conn.endpoint == Endpoint::Pusher {
                    self.send(
                        key,
                        crate::pusher::messages::error(
                            Some(4200),
                            "Server is shutting down: reconnect",
                            None,
                        ),
                    );
                }
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
