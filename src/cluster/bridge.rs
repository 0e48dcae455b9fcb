//! The Redis bridge thread: one per process, off the connection cores (tokio + `redis`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::StreamExt;
use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::bus::Bus;
use super::ring::{self, Rx, Tx};
use super::scripts;
use super::{ClusterIn, ClusterOut, CoreLink, STATUS};
use crate::pusher::messages::{self, Member};
use crate::pusher::peer::Publish;
use crate::pusher::query::{Filter, Row, Rows};
use crate::pusher::socket_id::SocketRef;

/// How long a query waits for the other nodes' answers.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

struct Settings {
    url: String,
    prefix: String,
    node: u32,
    ttl: u64,
    apps: Vec<String>,
}

/// A query waiting for other nodes.
struct Asking {
    shard: u32,
    id: u64,
    app: u16,
    filter: Filter,
    members: bool,
    rows: Rows,
    waiting: HashSet<u32>,
}

struct Bridge {
    s: Settings,
    con: Option<MultiplexedConnection>,
    to_cores: Vec<Tx<ClusterIn>>,
    asking: HashMap<u64, Asking>,
    next_ask: u64,
    alive: HashSet<u32>,
    /// Set while disconnected: the cores must re-register when Redis is back.
    needs_resync: bool,
    last_warning: Option<std::time::Instant>,
}

type Shared = Rc<RefCell<Bridge>>;

/// Claims a node id no other live node uses (`P:node:N` with `SET NX`), when Redis is
/// reachable at start-up; otherwise returns `preferred` (or a random one) with a warning.
pub fn claim_node_id(url: &str, prefix: &str, ttl: u64, preferred: u32) -> u32 {
    let attempt = || -> redis::RedisResult<u32> {
        let client = redis::Client::open(url)?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        for i in 0..32 {
            let id =
                if preferred != 0 && i == 0 { preferred } else { crate::pusher::socket_id::random_node_id() };
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
            if preferred != 0 {
                log::warn!("node id {preferred} is in use by a live node: picking another");
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::Client, "no free node id")))
    };
    match attempt() {
        Ok(id) => id,
        Err(e) => {
            let id = if preferred != 0 { preferred } else { crate::pusher::socket_id::random_node_id() };
            log::warn!("Redis at {url} unreachable at start-up ({e}): using node id {id} unchecked");
            id
        }
    }
}

/// Starts the bridge; returns each core's link.
pub fn start(url: &str, prefix: &str, node: u32, ttl: u64, apps: Vec<String>, cores: usize) -> Vec<CoreLink> {
    let mut links = Vec::with_capacity(cores);
    let mut from_cores = Vec::with_capacity(cores);
    let mut to_cores = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (out_tx, out_rx) = ring::ring::<ClusterOut>(super::RING);
        let (in_tx, in_rx) = ring::ring::<ClusterIn>(super::RING);
        links.push(CoreLink { tx: out_tx, rx: Some(in_rx) });
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
            local.block_on(&rt, run(settings, from_cores, to_cores));
        })
        .expect("spawn the Redis bridge");
    links
}

async fn run(s: Settings, from_cores: Vec<Rx<ClusterOut>>, to_cores: Vec<Tx<ClusterIn>>) {
    let b: Shared = Rc::new(RefCell::new(Bridge {
        s,
        con: None,
        to_cores,
        asking: HashMap::new(),
        next_ask: 1,
        alive: HashSet::new(),
        needs_resync: false,
        last_warning: None,
    }));
    for (shard, rx) in from_cores.into_iter().enumerate() {
        tokio::task::spawn_local(core_loop(b.clone(), shard as u32, rx));
    }
    tokio::task::spawn_local(liveness(b.clone()));
    subscriber(b).await;
}

impl Bridge {
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.s.prefix)
    }

    fn app_id(&self, app: u16) -> &str {
        &self.s.apps[app as usize]
    }

    fn app_index(&self, id: &str) -> Option<u16> {
        self.s.apps.iter().position(|a| a == id).map(|i| i as u16)
    }

    fn send_core(&mut self, shard: u32, msg: ClusterIn) {
        if self.to_cores[shard as usize].push(msg).is_err() {
            STATUS.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_all(&mut self, f: impl Fn() -> ClusterIn) {
        for shard in 0..self.to_cores.len() as u32 {
            self.send_core(shard, f());
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

/// Takes the connection handle out (cheap clone) or None while disconnected.
fn con_of(b: &Shared) -> Option<MultiplexedConnection> {
    b.borrow().con.clone()
}

fn presence_keys(b: &Bridge, app: &str, channel: &str, node: u32) -> [String; 4] {
    [
        b.key(&format!("p:{app}:{channel}:info")),
        b.key(&format!("p:{app}:{channel}:nodes")),
        b.key(&format!("p:{app}:{channel}:on")),
        b.key(&format!("node:{node}:p")),
    ]
}

/// Handles one core's messages in order.
async fn core_loop(b: Shared, shard: u32, mut rx: Rx<ClusterOut>) {
    loop {
        let msg = rx.pop().await;
        handle_out(&b, shard, msg).await;
    }
}

async fn handle_out(b: &Shared, shard: u32, msg: ClusterOut) {
    let con = con_of(b);
    let node = b.borrow().s.node;
    match msg {
        ClusterOut::Publish(p) => {
            let Some(mut con) = con else {
                STATUS.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let payload = String::from_utf8_lossy(crate::protocol::frame::payload_of(&p.frame)).into_owned();
            let (bus, text) = {
                let br = b.borrow();
                let msg = Bus::Publish {
                    node,
                    app: br.app_id(p.app as u16).to_string(),
                    channel: p.channel.to_string(),
                    except: p.except.map(|e| e.format()),
                    cache: p.cache.as_deref().map(str::to_string),
                    payload,
                };
                (br.key("bus"), serde_json::to_string(&msg).expect("serialises"))
            };
            match redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(&mut con).await {
                Ok(_) => {
                    STATUS.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    STATUS.dropped.fetch_add(1, Ordering::Relaxed);
                    b.borrow_mut().lost("PUBLISH", &e);
                }
            }
        }
        ClusterOut::Join { shard: owner, token, app, channel, member, node_new, max } => {
            let answer = match con {
                Some(mut con) => join(b, &mut con, app, &channel, &member, max).await,
                None => None,
            };
            let msg = match answer {
                Some((added, full, members)) => {
                    ClusterIn::Joined { token, added, full, members: Some(members) }
                }
                // Unreachable: decide on this node alone.
                None => ClusterIn::Joined { token, added: node_new, full: false, members: None },
            };
            b.borrow_mut().send_core(owner, msg);
        }
        ClusterOut::Rejoin { app, channel, member } => {
            if let Some(mut con) = con {
                let _ = join(b, &mut con, app, &channel, &member, usize::MAX).await;
            }
        }
        ClusterOut::Leave { shard: owner, app, channel, member } => {
            let removed = match con {
                Some(mut con) => leave(b, &mut con, app, &channel, &member.id, node).await,
                None => Some(true),
            };
            // An error: say removed (this node's view), like when Redis is unreachable.
            let removed = removed.unwrap_or(true);
            b.borrow_mut().send_core(owner, ClusterIn::Left { app, channel, member, removed });
        }
        ClusterOut::Occupied { shard: owner, app, channel, occupied } => {
            let changed = match con {
                Some(mut con) => occupy(b, &mut con, app, &channel, node, occupied).await.unwrap_or(true),
                None => true,
            };
            if changed {
                let name = if occupied { "channel_occupied" } else { "channel_vacated" };
                b.borrow_mut().send_core(
                    owner,
                    ClusterIn::Webhook { app, event: json!({"name": name, "channel": channel}) },
                );
            }
        }
        ClusterOut::Reoccupy { app, channel } => {
            if let Some(mut con) = con {
                let _ = occupy(b, &mut con, app, &channel, node, true).await;
            }
        }
        ClusterOut::Terminate { app, user_id } => {
            let Some(mut con) = con else { return };
            let (bus, text) = {
                let br = b.borrow();
                let msg = Bus::Terminate { node, app: br.app_id(app).to_string(), user: user_id.to_string() };
                (br.key("bus"), serde_json::to_string(&msg).expect("serialises"))
            };
            if let Err(e) = redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(&mut con).await {
                b.borrow_mut().lost("PUBLISH", &e);
            }
        }
        ClusterOut::Ask { shard: asker, id, app, filter, members, rows } => {
            ask(b, con, asker, id, app, filter, members, rows).await;
        }
        ClusterOut::Answer { to_node, id, rows } => {
            let Some(mut con) = con else { return };
            let (bus, text) = {
                let br = b.borrow();
                let rows = rows.into_iter().map(|(n, r)| (n.to_string(), r.subscriptions)).collect();
                (
                    br.key("bus"),
                    serde_json::to_string(&Bus::Answer { node, to: to_node, id, rows }).expect("serialises"),
                )
            };
            if let Err(e) = redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(&mut con).await {
                b.borrow_mut().lost("PUBLISH", &e);
            }
        }
    }
    let _ = shard;
}

/// Runs the join script: (added, full, members) or None on error.
async fn join(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: u16,
    channel: &str,
    m: &Member,
    max: usize,
) -> Option<(bool, bool, Vec<Member>)> {
    let (keys, node, app_id) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (presence_keys(&br, &app_id, channel, br.s.node), br.s.node, app_id)
    };
    // The stored value keeps the user id's JSON form and the info: "<id json>\n<info json>".
    let stored = format!("{}\n{}", m.id_json, m.info.as_deref().unwrap_or(""));
    let script = redis::Script::new(scripts::JOIN);
    let mut inv = script.prepare_invoke();
    for k in &keys {
        inv.key(k);
    }
    inv.arg(&m.id)
        .arg(node)
        .arg(stored)
        .arg(max.min(i64::MAX as usize) as i64)
        .arg(format!("{app_id}|{channel}|{}", m.id));
    match inv.invoke_async::<Vec<redis::Value>>(con).await {
        Ok(v) => {
            let int = |x: Option<&redis::Value>| matches!(x, Some(redis::Value::Int(1)));
            let (added, full) = (int(v.first()), int(v.get(1)));
            let strings: Vec<String> = v[2.min(v.len())..]
                .iter()
                .map(|x| redis::from_redis_value(x.clone()).unwrap_or_default())
                .collect();
            let members =
                strings.chunks(2).filter(|c| c.len() == 2).map(|c| member_from(&c[0], &c[1])).collect();
            Some((added, full, members))
        }
        Err(e) => {
            b.borrow_mut().lost("presence join", &e);
            None
        }
    }
}

fn member_from(id: &str, stored: &str) -> Member {
    let (id_json, info) = stored.split_once('\n').unwrap_or((stored, ""));
    let id_json =
        if id_json.is_empty() { serde_json::to_string(id).expect("a string") } else { id_json.to_string() };
    Member { id: id.to_string(), id_json, info: (!info.is_empty()).then(|| info.to_string()) }
}

async fn leave(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: u16,
    channel: &str,
    user: &str,
    node: u32,
) -> Option<bool> {
    let (keys, app_id) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (presence_keys(&br, &app_id, channel, node), app_id)
    };
    leave_raw(b, con, &keys, user, node, &format!("{app_id}|{channel}|{user}")).await
}

async fn leave_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    keys: &[String; 4],
    user: &str,
    node: u32,
    entry: &str,
) -> Option<bool> {
    let script = redis::Script::new(scripts::LEAVE);
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    inv.arg(user).arg(node).arg(entry);
    match inv.invoke_async::<i64>(con).await {
        Ok(n) => Some(n == 1),
        Err(e) => {
            b.borrow_mut().lost("presence leave", &e);
            None
        }
    }
}

async fn occupy(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: u16,
    channel: &str,
    node: u32,
    occupied: bool,
) -> Option<bool> {
    let (k1, k2, entry) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (
            br.key(&format!("o:{app_id}:{channel}")),
            br.key(&format!("node:{node}:o")),
            format!("{app_id}|{channel}"),
        )
    };
    occupy_raw(b, con, &k1, &k2, node, occupied, &entry).await
}

async fn occupy_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    k1: &str,
    k2: &str,
    node: u32,
    occupied: bool,
    entry: &str,
) -> Option<bool> {
    let script = redis::Script::new(scripts::OCCUPY);
    match script
        .key(k1)
        .key(k2)
        .arg(node)
        .arg(if occupied { "1" } else { "0" })
        .arg(entry)
        .invoke_async::<i64>(con)
        .await
    {
        Ok(n) => Some(n == 1),
        Err(e) => {
            b.borrow_mut().lost("occupancy", &e);
            None
        }
    }
}

/// Starts a cluster query: asks the other live nodes, answers after their replies or a timeout.
#[allow(clippy::too_many_arguments)]
async fn ask(
    b: &Shared,
    con: Option<MultiplexedConnection>,
    shard: u32,
    id: u64,
    app: u16,
    filter: Filter,
    members: bool,
    rows: Rows,
) {
    let Some(mut con) = con else {
        b.borrow_mut().send_core(shard, ClusterIn::Answered { id, rows });
        return;
    };
    // Who must answer: the nodes alive now (not as of the last heartbeat).
    let alive = match alive_nodes(b, &mut con).await {
        Ok(alive) => alive,
        Err(e) => {
            b.borrow_mut().lost("SMEMBERS", &e);
            b.borrow_mut().send_core(shard, ClusterIn::Answered { id, rows });
            return;
        }
    };
    let (qid, bus, text, waiting) = {
        let mut br = b.borrow_mut();
        br.alive = alive;
        let qid = br.next_ask;
        br.next_ask += 1;
        let node = br.s.node;
        let (prefix, names) = match &filter {
            Filter::Prefix(p) => (Some(p.to_string()), None),
            Filter::Names(n) => (None, Some(n.iter().map(|s| s.to_string()).collect())),
        };
        let msg = Bus::Ask { node, id: qid, app: br.app_id(app).to_string(), prefix, names };
        let waiting: HashSet<u32> = br.alive.iter().copied().filter(|&n| n != node).collect();
        (qid, br.key("bus"), serde_json::to_string(&msg).expect("serialises"), waiting)
    };
    let no_one = waiting.is_empty();
    b.borrow_mut().asking.insert(qid, Asking { shard, id, app, filter, members, rows, waiting });
    if !no_one {
        if let Err(e) = redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(&mut con).await {
            b.borrow_mut().lost("PUBLISH", &e);
        } else {
            let b2 = b.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(ASK_TIMEOUT).await;
                finish_ask(&b2, qid).await;
            });
            return;
        }
    }
    finish_ask(b, qid).await;
}

/// Completes a query: adds the cluster's presence counts (and members) from Redis.
async fn finish_ask(b: &Shared, qid: u64) {
    let Some(mut a) = b.borrow_mut().asking.remove(&qid) else { return };
    let con = con_of(b);
    if let Some(mut con) = con {
        let app_id = b.borrow().app_id(a.app).to_string();
        let mut names: Vec<Box<str>> = a.rows.keys().cloned().collect();
        if let Filter::Names(list) = &a.filter {
            names.extend(list.iter().cloned());
        }
        names.sort();
        names.dedup();
        for name in names.into_iter().filter(|n| n.starts_with("presence-")) {
            let key = b.borrow().key(&format!("p:{app_id}:{name}:info"));
            let users: redis::RedisResult<Vec<String>> =
                redis::cmd("HKEYS").arg(&key).query_async(&mut con).await;
            match users {
                Ok(users) => {
                    let row = a.rows.entry(name).or_default();
                    row.users = Some(users.len() as u64);
                    if a.members {
                        row.members = Some(users.into_iter().map(Into::into).collect());
                    }
                }
                Err(e) => {
                    b.borrow_mut().lost("HKEYS", &e);
                    break;
                }
            }
        }
    }
    b.borrow_mut().send_core(a.shard, ClusterIn::Answered { id: a.id, rows: a.rows });
}

/// The pub/sub side: receives other nodes' messages; reconnects with backoff.
async fn subscriber(b: Shared) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (url, bus) = {
            let br = b.borrow();
            (br.s.url.clone(), br.key("bus"))
        };
        let pubsub = async {
            let client = redis::Client::open(url.as_str())?;
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&bus).await?;
            Ok::<_, redis::RedisError>(ps)
        }
        .await;
        let mut ps = match pubsub {
            Ok(ps) => ps,
            Err(e) => {
                b.borrow_mut().warn("SUBSCRIBE", &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(bus) = serde_json::from_slice::<Bus>(msg.get_payload_bytes()) else { continue };
            on_bus(&b, bus).await;
        }
        log::warn!("Redis pub/sub connection closed: resubscribing");
    }
}

async fn on_bus(b: &Shared, msg: Bus) {
    let me = b.borrow().s.node;
    if msg.origin() == me {
        return; // our own publish: already delivered here
    }
    STATUS.received.fetch_add(1, Ordering::Relaxed);
    // The borrow ends before any await: a completed query is finished afterwards.
    let finished = {
        let mut br = b.borrow_mut();
        match msg {
            Bus::Publish { app, channel, except, cache, payload, .. } => {
                if let Some(app) = br.app_index(&app) {
                    let frame = crate::protocol::frame::encode(
                        crate::protocol::frame::Opcode::Text,
                        payload.as_bytes(),
                    );
                    let except = except.as_deref().and_then(SocketRef::parse);
                    let cache = cache.map(Into::into);
                    let p =
                        Arc::new(Publish { app: app as u32, channel: channel.into(), frame, except, cache });
                    br.send_all(|| ClusterIn::Publish(p.clone()));
                }
                None
            }
            Bus::Terminate { app, user, .. } => {
                if let Some(app) = br.app_index(&app) {
                    let user: Box<str> = user.into();
                    br.send_all(|| ClusterIn::Terminate { app, user_id: user.clone() });
                }
                None
            }
            Bus::Ask { node, id, app, prefix, names } => {
                if let Some(app) = br.app_index(&app) {
                    let filter = match (prefix, names) {
                        (_, Some(n)) => Filter::Names(n.into_iter().map(Into::into).collect()),
                        (p, None) => Filter::Prefix(p.unwrap_or_default().into()),
                    };
                    br.send_core(0, ClusterIn::Ask { from_node: node, id, app, filter, members: false });
                }
                None
            }
            Bus::Answer { node, to, id, rows } => match br.asking.get_mut(&id) {
                Some(a) if to == me => {
                    for (name, subs) in rows {
                        a.rows.entry(name.into()).or_insert_with(Row::default).subscriptions += subs;
                    }
                    a.waiting.remove(&node);
                    a.waiting.is_empty().then_some(id)
                }
                _ => None,
            },
        }
    };
    if let Some(id) = finished {
        finish_ask(b, id).await;
    }
}

/// Keeps the command connection up, this node's heartbeat fresh, and cleans up dead nodes.
async fn liveness(b: Shared) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if con_of(&b).is_none() {
            let url = b.borrow().s.url.clone();
            let connected = async {
                let client = redis::Client::open(url.as_str())?;
                client.get_multiplexed_async_connection().await
            }
            .await;
            match connected {
                Ok(con) => {
                    backoff = Duration::from_millis(100);
                    let mut br = b.borrow_mut();
                    br.con = Some(con);
                    STATUS.connected.store(1, Ordering::Relaxed);
                    log::info!("Redis connected ({}): node {} joins the cluster", br.s.url, br.s.node);
                    if br.needs_resync {
                        br.needs_resync = false;
                        br.send_all(|| ClusterIn::Resync);
                    }
                }
                Err(e) => {
                    b.borrow_mut().warn("connect", &e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        heartbeat(&b).await;
        if con_of(&b).is_none() {
            continue; // lost during the heartbeat: reconnect now
        }
        let ttl = b.borrow().s.ttl;
        tokio::time::sleep(Duration::from_millis(ttl * 1000 / 4)).await;
    }
}

/// The registered nodes whose heartbeat key exists.
async fn alive_nodes(b: &Shared, con: &mut MultiplexedConnection) -> redis::RedisResult<HashSet<u32>> {
    let nodes_key = b.borrow().key("nodes");
    let nodes: Vec<u32> = redis::cmd("SMEMBERS").arg(&nodes_key).query_async(con).await?;
    let mut alive = HashSet::new();
    for n in nodes {
        let key = b.borrow().key(&format!("node:{n}"));
        if redis::cmd("EXISTS").arg(&key).query_async::<bool>(con).await? {
            alive.insert(n);
        }
    }
    Ok(alive)
}

/// Refreshes our heartbeat key, learns who is alive, and removes nodes whose key expired.
async fn heartbeat(b: &Shared) {
    let Some(mut con) = con_of(b) else { return };
    let (node, ttl, node_key, nodes_key) = {
        let br = b.borrow();
        (br.s.node, br.s.ttl, br.key(&format!("node:{}", br.s.node)), br.key("nodes"))
    };
    let r: redis::RedisResult<()> = async {
        // The key lives 3/4 of the TTL and is refreshed every 1/4: a dead node's key is gone at
        // most 3/4 TTL after its last refresh, and a survivor notices within 1/4 TTL more, so
        // its members are removed within the TTL.
        redis::cmd("SET")
            .arg(&node_key)
            .arg("alive")
            .arg("PX")
            .arg(ttl * 750)
            .query_async::<()>(&mut con)
            .await?;
        redis::cmd("SADD").arg(&nodes_key).arg(node).query_async::<i64>(&mut con).await?;
        let nodes: Vec<u32> = redis::cmd("SMEMBERS").arg(&nodes_key).query_async(&mut con).await?;
        let mut alive = HashSet::new();
        for n in nodes {
            let key = b.borrow().key(&format!("node:{n}"));
            let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut con).await?;
            if exists {
                alive.insert(n);
            } else {
                clean_up_dead(b, &mut con, n).await?;
            }
        }
        STATUS.nodes.store(alive.len() as u64, Ordering::Relaxed);
        b.borrow_mut().alive = alive;
        Ok(())
    }
    .await;
    if let Err(e) = r {
        b.borrow_mut().lost("heartbeat", &e);
    }
}

/// Removes a dead node's presence and occupancy (once, under a lock), announcing the members
/// who were only there and the channels only it occupied.
async fn clean_up_dead(b: &Shared, con: &mut MultiplexedConnection, dead: u32) -> redis::RedisResult<()> {
    let lock = b.borrow().key(&format!("cleanup:{dead}"));
    let got: Option<String> =
        redis::cmd("SET").arg(&lock).arg("1").arg("NX").arg("EX").arg(60).query_async(con).await?;
    if got.is_none() {
        return Ok(());
    }
    let (p_key, o_key, nodes_key) = {
        let br = b.borrow();
        (br.key(&format!("node:{dead}:p")), br.key(&format!("node:{dead}:o")), br.key("nodes"))
    };
    let entries: Vec<String> = redis::cmd("SMEMBERS").arg(&p_key).query_async(con).await?;
    let mut removed = 0;
    for entry in &entries {
        let mut parts = entry.splitn(3, '|');
        let (Some(app_id), Some(channel), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (keys, app) = {
            let br = b.borrow();
            (presence_keys(&br, app_id, channel, dead), br.app_index(app_id))
        };
        let info_key = keys[0].clone();
        // The member's stored id form, read before the leave deletes it.
        let stored: Option<String> = redis::cmd("HGET").arg(&info_key).arg(user).query_async(con).await?;
        if leave_raw(b, con, &keys, user, dead, entry).await == Some(true) {
            removed += 1;
            let Some(app) = app else { continue };
            let member = member_from(user, stored.as_deref().unwrap_or(""));
            announce_removed(b, con, app, channel, &member).await;
        }
    }
    let occupied: Vec<String> = redis::cmd("SMEMBERS").arg(&o_key).query_async(con).await?;
    for entry in &occupied {
        let Some((app_id, channel)) = entry.split_once('|') else { continue };
        // Both lookups end their borrows here: a `Ref` taken in an `if let` scrutinee would live
        // through the body and make its `borrow_mut` panic.
        let (k1, app) = {
            let br = b.borrow();
            (br.key(&format!("o:{app_id}:{channel}")), br.app_index(app_id))
        };
        let vacated = occupy_raw(b, con, &k1, &o_key, dead, false, entry).await == Some(true);
        if let (true, Some(app)) = (vacated, app) {
            let event = json!({"name": "channel_vacated", "channel": channel});
            b.borrow_mut().send_core(0, ClusterIn::Webhook { app, event });
        }
    }
    redis::cmd("DEL").arg(&p_key).arg(&o_key).query_async::<i64>(con).await?;
    redis::cmd("SREM").arg(&nodes_key).arg(dead).query_async::<i64>(con).await?;
    log::info!("node {dead} stopped answering: removed its presence ({removed} members left the cluster)");
    Ok(())
}

/// `member_removed` for a member of a dead node: to this node's cores, to the other nodes, and
/// as a webhook (from this node only).
async fn announce_removed(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: u16,
    channel: &str,
    member: &Member,
) {
    let frame: Bytes = messages::member_removed(channel, &member.id_json);
    let payload = String::from_utf8_lossy(crate::protocol::frame::payload_of(&frame)).into_owned();
    let (bus, text) = {
        let br = b.borrow();
        let msg = Bus::Publish {
            node: br.s.node,
            app: br.app_id(app).to_string(),
            channel: channel.to_string(),
            except: None,
            cache: None,
            payload,
        };
        (br.key("bus"), serde_json::to_string(&msg).expect("serialises"))
    };
    {
        let mut br = b.borrow_mut();
        let p =
            Arc::new(Publish { app: app as u32, channel: channel.into(), frame, except: None, cache: None });
        br.send_all(|| ClusterIn::Publish(p.clone()));
        let event = json!({"name": "member_removed", "channel": channel, "user_id": member.id});
        br.send_core(0, ClusterIn::Webhook { app, event });
    }
    let _ = redis::cmd("PUBLISH").arg(bus).arg(text).query_async::<i64>(con).await;
}
