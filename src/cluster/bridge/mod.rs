//! The Redis bridge thread: one per process, off the connection cores (tokio + `redis`). Its
//! tasks share one `Bridge` (a `RefCell` on one thread; no borrow is held across an await):
//! one task per core drains that core's ring (`outbound`), one receives the other nodes' bus
//! messages (`inbound`), one keeps the connection, the heartbeat and the dead-node clean-up
//! (`liveness`). Presence and occupancy go through atomic Lua scripts (`presence`), as do
//! watchlist online status (`users`) and live subscription counts (`counts`); channel queries
//! gather every node's answer (`queries`).

mod counts;
mod inbound;
mod liveness;
mod outbound;
mod presence;
mod queries;
mod users;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::bus::Bus;
use super::ring::{self, Rx, Tx};
use super::{CoreLink, STATUS};
use crate::core::io::CoreId;
use crate::protocol::deflate::{CompressedFrame, Deflater};
use crate::pusher::apps::AppIdx;
use crate::pusher::query::{Filter, Rows};
use crate::pusher::socket_id::{NodeId, random_node_id};
use crate::pusher::wire::{ClusterIn, ClusterOut};

struct Settings {
    url: String,
    prefix: String,
    node: NodeId,
    ttl: u64,
    /// App ids in index order (nodes name apps by id on the bus).
    apps: Vec<String>,
}

/// What a node's bridge needs besides Redis: its id, the apps, and whether its cores send
/// compressed frames (then an event from another node is compressed once, here).
pub(crate) struct NodeSetup {
    pub(crate) node: NodeId,
    pub(crate) ttl: u64,
    pub(crate) apps: Vec<String>,
    pub(crate) deflate: bool,
}

/// A query waiting for other nodes.
struct Asking {
    shard: CoreId,
    id: u64,
    app: AppIdx,
    filter: Filter,
    members: bool,
    rows: Rows,
    waiting: HashSet<NodeId>,
}

struct Bridge {
    s: Settings,
    con: Option<MultiplexedConnection>,
    to_cores: Vec<Tx<ClusterIn>>,
    asking: HashMap<u64, Asking>,
    next_ask: u64,
    alive: HashSet<NodeId>,
    /// Set while disconnected: the cores must re-register when Redis is back.
    needs_resync: bool,
    last_warning: Option<std::time::Instant>,
    /// Compresses other nodes' events once for this node's cores (with permessage-deflate).
    deflater: Option<Box<Deflater>>,
}

type Shared = Rc<RefCell<Bridge>>;

/// Claims a node id no other live node uses (`P:node:N` with `SET NX`), when Redis is
/// reachable at start-up; otherwise returns `preferred` (or a random one) with a warning.
pub(crate) fn claim_node_id(url: &str, prefix: &str, ttl: u64, preferred: Option<NodeId>) -> NodeId {
    let attempt = || -> redis::RedisResult<NodeId> {
        let client = redis::Client::open(url)?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        for i in 0..64 {
            let id = match preferred {
                Some(p) if i == 0 => p,
                _ => random_node_id(),
            };
            let ok: Option<String> = redis::cmd("SET")
                .arg(format!("{prefix}:node:{id}"))
                .arg("starting")
                .arg("NX")
                .arg("EX")
                .arg(ttl)
                .query(&mut con)?;
            if ok.is_some() {
                return Ok(id);
            }
            if i == 0 && preferred.is_some() {
                log::warn!("node id {id} is in use by a live node: picking another");
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::Client, "no free node id after 64 tries")))
    };
    match attempt() {
        Ok(id) => id,
        Err(e) => {
            let id = preferred.unwrap_or_else(random_node_id);
            log::warn!("Redis at {url} unreachable at start-up ({e}): using node id {id} unchecked");
            id
        }
    }
}

/// Starts the bridge thread; returns each core's link.
pub(crate) fn start(url: &str, prefix: &str, setup: NodeSetup, cores: usize) -> Vec<CoreLink> {
    let NodeSetup { node, ttl, apps, deflate } = setup;
    let mut links = Vec::with_capacity(cores);
    let mut from_cores = Vec::with_capacity(cores);
    let mut to_cores = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (out_tx, out_rx) = ring::ring::<ClusterOut>(super::RING);
        let (in_tx, in_rx) = ring::ring::<ClusterIn>(super::RING);
        links.push(CoreLink { tx: out_tx, rx: in_rx });
        from_cores.push(out_rx);
        to_cores.push(in_tx);
    }
    STATUS.enabled.store(1, Ordering::Relaxed);
    let settings = Settings { url: url.to_string(), prefix: prefix.to_string(), node, ttl, apps };
    std::thread::Builder::new()
        .name("corecast-redis".into())
        .spawn(move || {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(settings, deflate, from_cores, to_cores));
        })
        .expect("spawn the Redis bridge");
    links
}

async fn run(s: Settings, deflate: bool, from_cores: Vec<Rx<ClusterOut>>, to_cores: Vec<Tx<ClusterIn>>) {
    let b: Shared = Rc::new(RefCell::new(Bridge {
        s,
        con: None,
        to_cores,
        asking: HashMap::new(),
        next_ask: 1,
        alive: HashSet::new(),
        needs_resync: false,
        last_warning: None,
        deflater: deflate.then(|| Box::new(Deflater::new())),
    }));
    for (shard, rx) in CoreId::all(u16::try_from(from_cores.len()).expect("cores fit u16")).zip(from_cores) {
        tokio::task::spawn_local(outbound::core_loop(b.clone(), shard, rx));
    }
    tokio::task::spawn_local(liveness::run(b.clone()));
    inbound::subscriber(b).await;
}

impl Bridge {
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.s.prefix)
    }

    fn app_id(&self, app: AppIdx) -> &str {
        &self.s.apps[app.index()]
    }

    fn app_index(&self, id: &str) -> Option<AppIdx> {
        self.s.apps.iter().position(|a| a == id).and_then(|i| u16::try_from(i).ok()).map(AppIdx)
    }

    /// The compressed form of an event frame from another node, when this node compresses.
    fn compress(&mut self, frame: &bytes::Bytes) -> Option<CompressedFrame> {
        let payload = crate::protocol::frame::payload_of(frame);
        self.deflater.as_mut()?.frame_if_smaller(crate::protocol::frame::Opcode::Text, payload)
    }

    fn send_core(&mut self, shard: CoreId, msg: ClusterIn) {
        if self.to_cores[shard.index()].push(msg).is_err() {
            STATUS.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_all(&mut self, f: impl Fn() -> ClusterIn) {
        for i in 0..self.to_cores.len() {
            if self.to_cores[i].push(f()).is_err() {
                STATUS.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn warn(&mut self, what: &str, e: &redis::RedisError) {
        if self.last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            log::warn!("Redis: {what} failed: {e}");
            self.last_warning = Some(std::time::Instant::now());
        }
    }

    /// Drops the connection after an error; the liveness task reconnects.
    fn lost(&mut self, what: &str, e: &redis::RedisError) {
        self.warn(what, e);
        if self.con.take().is_some() {
            log::warn!("Redis connection lost: cross-node delivery paused, local delivery goes on");
            STATUS.connected.store(0, Ordering::Relaxed);
            self.needs_resync = true;
        }
    }
}

/// The command connection (a cheap clone), or None while disconnected.
fn con_of(b: &Shared) -> Option<MultiplexedConnection> {
    b.borrow().con.clone()
}

/// Publishes `msg` on the bus; false (and the connection marked lost) on error.
async fn publish_bus(b: &Shared, con: &mut MultiplexedConnection, msg: &Bus) -> bool {
    let (bus, text) = {
        let br = b.borrow();
        (br.key("bus"), serde_json::to_string(msg).expect("bus messages serialise"))
    };
    match redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(con).await {
        Ok(_) => true,
        Err(e) => {
            b.borrow_mut().lost("PUBLISH", &e);
            false
        }
    }
}
