//! A worker process: holds its share of the connections on one thread, prints a JSON sample line
//! every `sample_ms`, and follows `next`/`stop` commands from the coordinator on stdin.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::frames;
use crate::plan::{Behaviour, Plan, Target};
use crate::recv::{NewConn, Receiver};
use crate::sign;
use crate::wire::{self, Failure, Ws};

#[derive(Default)]
struct Stats {
    attempts: Cell<u64>,
    settled: Cell<u64>,
    open: Cell<u64>,
    connected: Cell<u64>,
    closed: Cell<u64>,
    failures: RefCell<BTreeMap<String, u64>>,
    handshake_us: RefCell<Option<Histogram<u64>>>,
    latency_us: RefCell<Option<Histogram<u64>>>,
    messages: Cell<u64>,
    deliveries: Cell<u64>,
    subscribed: Cell<u64>,
    subscribe_errors: Cell<u64>,
    member_added: Cell<u64>,
    member_removed: Cell<u64>,
    joins: Cell<u64>,
    leaves: Cell<u64>,
    pongs_sent: Cell<u64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

impl Stats {
    fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }
    fn fail(&self, f: Failure) {
        *self.failures.borrow_mut().entry(f.name()).or_default() += 1;
    }
    fn record(h: &RefCell<Option<Histogram<u64>>>, us: u64) {
        let _ = h.borrow_mut().get_or_insert_with(hist).record(us.max(1));
    }
    fn take(h: &RefCell<Option<Histogram<u64>>>) -> Vec<(u64, u64)> {
        pairs(h.borrow_mut().take())
    }
}

/// A histogram as (value, count) pairs for a sample line (none if there is no histogram).
fn pairs(h: Option<Histogram<u64>>) -> Vec<(u64, u64)> {
    h.map_or_else(Vec::new, |h| {
        h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
    })
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// How a connection's behaviour ended.
enum End {
    /// The worker is stopping.
    Stop,
    /// The connection closed (a cycling behaviour connects again).
    Closed,
    /// The receive thread owns the connection now.
    HandedOff,
}

pub fn run(plan: Plan) {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, drive(plan));
    std::process::exit(0);
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: a worker holds up to --per-worker sockets,
/// and a login shell's soft limit is often 1,024.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn drive(plan: Plan) {
    let plan = Rc::new(plan);
    let stats = Rc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
        let _ = cmd_tx.send("stop".into());
    });
    // Subscribers are read by the receive thread once subscribed.
    let receiver = match &plan.behaviour {
        Behaviour::Subscribe { publishers, .. } => {
            Some(Rc::new(Receiver::start(*publishers).expect("the receive thread starts")))
        }
        _ => None,
    };
    let sampler = tokio::task::spawn_local(sample_loop(plan.clone(), stats.clone(), receiver.clone()));
    let mut tasks = Vec::new();
    let mut spawned = 0usize;
    let started = Instant::now();
    let rate = plan.rate.max(1.0);
    let mut stopped = false;
    let pending = (plan.max_pending > 0).then(|| std::sync::Arc::new(Semaphore::new(plan.max_pending)));
    'levels: for (index, &level) in plan.levels.iter().enumerate() {
        let base = spawned;
        let level_start = Instant::now();
        while spawned < level {
            let due = level_start + Duration::from_secs_f64((spawned - base) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let permit = match &pending {
                Some(p) => Some(p.clone().acquire_owned().await.expect("never closed")),
                None => None,
            };
            let id = plan.first_id + spawned;
            tasks.push(tokio::task::spawn_local(connection(
                id,
                plan.clone(),
                stats.clone(),
                stop_rx.clone(),
                receiver.clone(),
                permit,
            )));
            spawned += 1;
            if let Ok(cmd) = cmd_rx.try_recv()
                && cmd == "stop"
            {
                stopped = true;
                break 'levels;
            }
        }
        // Every first attempt has finished (connected or failed).
        while stats.settled.get() < spawned as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        emit(&json!({"type": "level", "worker": plan.worker, "index": index, "open": stats.open.get(),
            "t_ms": started.elapsed().as_millis() as u64}));
        match cmd_rx.recv().await.as_deref() {
            Some("next") => continue,
            _ => {
                stopped = true;
                break;
            }
        }
    }
    if !stopped {
        while let Some(cmd) = cmd_rx.recv().await {
            if cmd == "stop" {
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for t in tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    sampler.abort();
    if let Some(r) = &receiver {
        r.stop();
    }
    print_sample(&plan, &stats, receiver.as_deref(), true);
}

async fn sample_loop(plan: Rc<Plan>, stats: Rc<Stats>, receiver: Option<Rc<Receiver>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(plan.sample_ms)).await;
        print_sample(&plan, &stats, receiver.as_deref(), false);
    }
}

fn print_sample(plan: &Plan, s: &Stats, receiver: Option<&Receiver>, last: bool) {
    // The receive thread's figures add to this thread's.
    let r = receiver.map(|r| r.shared().clone());
    let get = |f: fn(&crate::recv::Shared) -> &std::sync::atomic::AtomicU64| {
        r.as_ref().map_or(0, |r| f(r).load(std::sync::atomic::Ordering::Relaxed))
    };
    if let Some(h) = r.as_ref().and_then(|r| r.take_latency()) {
        let _ = s.latency_us.borrow_mut().get_or_insert_with(hist).add(&h);
    }
    emit(&json!({
        "type": if last { "done" } else { "sample" },
        "worker": plan.worker,
        "attempts": s.attempts.get(),
        "open": s.open.get() + get(|r| &r.open),
        "connected": s.connected.get(),
        "closed": s.closed.get() + get(|r| &r.closed),
        "failures": *s.failures.borrow(),
        "handshake_us": Stats::take(&s.handshake_us),
        "latency_us": Stats::take(&s.latency_us),
        // Only the receive thread reads sockets: its histogram goes out as it is.
        "read_lag_us": pairs(r.as_ref().and_then(|r| r.take_read_lag())),
        "messages": s.messages.get() + get(|r| &r.deliveries) + get(|r| &r.other_messages),
        "deliveries": s.deliveries.get() + get(|r| &r.deliveries),
        "seq_gaps": get(|r| &r.seq_gaps),
        "out_of_order": get(|r| &r.out_of_order),
        "misrouted": get(|r| &r.misrouted),
        "reads": get(|r| &r.reads),
        "bytes_received": get(|r| &r.bytes),
        "protocol_errors": get(|r| &r.protocol_errors),
        "receive_thread_cpu_us": get(|r| &r.cpu_us),
        "subscribed": s.subscribed.get(),
        "subscribe_errors": s.subscribe_errors.get(),
        "member_added": s.member_added.get(),
        "member_removed": s.member_removed.get(),
        "joins": s.joins.get(),
        "leaves": s.leaves.get(),
        "pongs_sent": s.pongs_sent.get() + get(|r| &r.pongs_sent),
    }));
}

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// One connection slot: connects, runs the behaviour, and for cycling behaviours repeats.
async fn connection(
    id: usize,
    plan: Rc<Plan>,
    st: Rc<Stats>,
    mut stop: watch::Receiver<bool>,
    receiver: Option<Rc<Receiver>>,
    // Held while the first attempt is in flight: until subscribed for subscribers, until open
    // otherwise.
    mut pending: Option<OwnedSemaphorePermit>,
) {
    let mut first = true;
    loop {
        if *stop.borrow() {
            break;
        }
        Stats::add(&st.attempts, 1);
        let t0 = Instant::now();
        let opened = tokio::time::timeout(Duration::from_secs(10), open(id, &plan)).await;
        if first {
            Stats::add(&st.settled, 1);
            first = false;
        }
        if receiver.is_none() || !matches!(opened, Ok(Ok(_))) {
            drop(pending.take());
        }
        let (ws, socket_id) = match opened {
            Ok(Ok(ok)) => ok,
            Ok(Err(f)) => {
                st.fail(f);
                if plan.behaviour.cycles() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                break;
            }
            Err(_) => {
                st.fail(Failure::Timeout);
                break;
            }
        };
        Stats::record(&st.handshake_us, t0.elapsed().as_micros() as u64);
        Stats::add(&st.connected, 1);
        Stats::add(&st.open, 1);
        let end = match &receiver {
            Some(r) => {
                let end = subscribe_and_hand_off(id, ws, &socket_id, &plan, &st, r).await;
                drop(pending.take());
                end
            }
            None => behave(id, ws, socket_id, &plan, &st, &mut stop).await,
        };
        if let End::HandedOff = end {
            st.open.set(st.open.get() - 1);
            break;
        }
        st.open.set(st.open.get() - 1);
        Stats::add(&st.closed, 1);
        if matches!(end, End::Stop) || !plan.behaviour.cycles() {
            break;
        }
    }
}

/// Connects and completes the WebSocket (and Pusher) handshake; returns the socket id (Pusher).
async fn open(id: usize, plan: &Plan) -> Result<(Ws, String), Failure> {
    let source =
        if plan.source_ips.is_empty() { None } else { Some(plan.source_ips[id % plan.source_ips.len()]) };
    let stream = wire::connect(plan.server, source).await.map_err(|e| Failure::from_io(&e))?;
    let host = plan.server.to_string();
    match &plan.target {
        Target::Raw { path } => {
            Ok((Ws::handshake(stream, &host, path, id as u32, plan.deflate).await?, String::new()))
        }
        Target::Plain { sub_path, .. } => {
            let path = sub_path.replace("{channel}", &channel_of(id, plan).unwrap_or_default());
            Ok((Ws::handshake(stream, &host, &path, id as u32, plan.deflate).await?, String::new()))
        }
        Target::Pusher { key, .. } => {
            let path = format!("/app/{key}?protocol=7&client=corecast-load&version=0.1.0&flash=false");
            let mut ws = Ws::handshake(stream, &host, &path, id as u32, plan.deflate).await?;
            loop {
                let frame = ws.recv().await.map_err(|e| Failure::from_io(&e))?.ok_or(Failure::Reset)?;
                match frame.opcode {
                    1 => {
                        let msg: serde_json::Value =
                            serde_json::from_slice(&frame.payload).map_err(|_| Failure::Other)?;
                        match msg["event"].as_str() {
                            Some("pusher:connection_established") => {
                                let data: serde_json::Value =
                                    serde_json::from_str(msg["data"].as_str().unwrap_or("{}"))
                                        .unwrap_or_default();
                                let sid = data["socket_id"].as_str().unwrap_or_default().to_string();
                                return Ok((ws, sid));
                            }
                            Some("pusher:error") => {
                                return Err(
                                    Failure::Pusher(msg["data"]["code"].as_u64().unwrap_or(0) as u16),
                                );
                            }
                            _ => return Err(Failure::Other),
                        }
                    }
                    8 => {
                        let code = frame.payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                        return Err(Failure::Pusher(code));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn subscribe_message(plan: &Plan, id: usize, socket_id: &str, channel: &str, user: usize) -> String {
    let Target::Pusher { key, secret } = &plan.target else { return String::new() };
    if channel.starts_with("presence-") {
        let data = json!({"user_id": format!("user-{user}"), "user_info": {"name": format!("User {user}")}})
            .to_string();
        let auth = sign::channel_auth(key, secret, socket_id, channel, Some(&data));
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}})
            .to_string()
    } else if channel.starts_with("private-") {
        let auth = sign::channel_auth(key, secret, socket_id, channel, None);
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}).to_string()
    } else {
        let _ = id;
        json!({"event": "pusher:subscribe", "data": {"channel": channel}}).to_string()
    }
}

/// Runs the behaviour on an open connection until it ends or `stop`.
async fn behave(
    id: usize,
    mut ws: Ws,
    socket_id: String,
    plan: &Plan,
    st: &Stats,
    stop: &mut watch::Receiver<bool>,
) -> End {
    // All connections of one user share a channel, so presence deduplicates them.
    let user = id / plan.conns_per_user.max(1);
    let pick = |channels: &Vec<String>| channels.get(plan.layout.channel(id, user, channels.len())).cloned();
    let (channel, stay, jitter, echo) = match &plan.behaviour {
        Behaviour::Idle { channels } | Behaviour::Subscribe { channels, .. } => {
            (pick(channels), None, 0, None)
        }
        Behaviour::Presence { channels, stay_ms } => (pick(channels), Some(*stay_ms), 0, None),
        Behaviour::Churn { channels, stay_ms, jitter_ms } => {
            (pick(channels), Some(*stay_ms), *jitter_ms, None)
        }
        Behaviour::Echo { size, interval_ms } => (None, None, 0, Some((*size, *interval_ms))),
    };
    let presence = matches!(plan.behaviour, Behaviour::Presence { .. });
    // Plain servers subscribe by path; only Pusher servers are sent a subscription.
    if let Some(ch) = &channel
        && matches!(plan.target, Target::Pusher { .. })
        && ws.send_text(&subscribe_message(plan, id, &socket_id, ch, user)).await.is_err()
    {
        return End::Closed;
    }
    if let Some((size, _)) = echo
        && ws.send_text(&echo_payload(size)).await.is_err()
    {
        return End::Closed;
    }
    let stay_for = stay.map(|ms| {
        let j = if jitter > 0 { (id as u64 * 7919 + now_ns() / 1000) % (2 * jitter + 1) } else { 0 };
        Duration::from_millis(ms + j).saturating_sub(Duration::from_millis(jitter))
    });
    let mut until = stay_for.map(|d| tokio::time::Instant::now() + d);
    let mut joined = false;
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => { ws.close().await; return End::Stop; }
            _ = async { match until { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                if presence && joined {
                    // Leave the presence channel and join again on the same connection.
                    let ch = channel.clone().unwrap_or_default();
                    let _ = ws.send_text(&json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}).to_string()).await;
                    Stats::add(&st.leaves, 1);
                    joined = false;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if ws.send_text(&subscribe_message(plan, id, &socket_id, &ch, user)).await.is_err() { return End::Closed; }
                    until = stay_for.map(|d| tokio::time::Instant::now() + d);
                    continue;
                }
                if presence {
                    until = stay_for.map(|d| tokio::time::Instant::now() + d);
                    continue;
                }
                ws.close().await;
                return End::Closed;
            }
            f = ws.recv() => f,
        };
        let Ok(Some(frame)) = frame else { return End::Closed };
        match frame.opcode {
            9 => {
                let _ = ws.send(10, &frame.payload).await;
            }
            8 => return End::Closed,
            1 | 2 => {
                Stats::add(&st.messages, 1);
                if let Some((size, interval)) = echo {
                    if let Some(sent) = leading_number(&frame.payload) {
                        Stats::record(&st.latency_us, now_ns().saturating_sub(sent) / 1000);
                        Stats::add(&st.deliveries, 1);
                    }
                    if interval > 0 {
                        tokio::time::sleep(Duration::from_millis(interval)).await;
                    }
                    if ws.send_text(&echo_payload(size)).await.is_err() {
                        return End::Closed;
                    }
                    continue;
                }
                on_pusher_message(&frame.payload, &mut ws, st, &mut joined).await;
            }
            _ => {}
        }
    }
}

async fn on_pusher_message(payload: &[u8], ws: &mut Ws, st: &Stats, joined: &mut bool) {
    // Events published by the harness carry a probe with their publish time.
    if let Some(p) = frames::find_probe(payload) {
        Stats::record(&st.latency_us, now_ns().saturating_sub(p.sent_ns) / 1000);
        Stats::add(&st.deliveries, 1);
        return;
    }
    let Ok(msg) = serde_json::from_slice::<serde_json::Value>(payload) else { return };
    match msg["event"].as_str().unwrap_or("") {
        "pusher:ping" => {
            let _ = ws.send_text(r#"{"event":"pusher:pong","data":{}}"#).await;
            Stats::add(&st.pongs_sent, 1);
        }
        "pusher_internal:subscription_succeeded" => {
            Stats::add(&st.subscribed, 1);
            if msg["channel"].as_str().is_some_and(|c| c.starts_with("presence-")) {
                Stats::add(&st.joins, 1);
                *joined = true;
            }
        }
        "pusher:subscription_error" | "pusher:error" => Stats::add(&st.subscribe_errors, 1),
        "pusher_internal:member_added" => Stats::add(&st.member_added, 1),
        "pusher_internal:member_removed" => Stats::add(&st.member_removed, 1),
        _ => {}
    }
}

fn echo_payload(size: usize) -> String {
    let mut s = now_ns().to_string();
    s.push(' ');
    while s.len() < size {
        s.push('x');
    }
    s
}

fn leading_number(b: &[u8]) -> Option<u64> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits < 10 {
        return None;
    }
    std::str::from_utf8(&b[..digits]).ok()?.parse().ok()
}

/// The channel connection `id` subscribes to (the plan's layout picks it), if its behaviour has
/// one.
fn channel_index(id: usize, plan: &Plan) -> Option<usize> {
    let user = id / plan.conns_per_user.max(1);
    match &plan.behaviour {
        Behaviour::Idle { channels }
        | Behaviour::Subscribe { channels, .. }
        | Behaviour::Presence { channels, .. }
        | Behaviour::Churn { channels, .. }
            if !channels.is_empty() =>
        {
            Some(plan.layout.channel(id, user, channels.len()))
        }
        _ => None,
    }
}

fn channel_of(id: usize, plan: &Plan) -> Option<String> {
    let i = channel_index(id, plan)?;
    match &plan.behaviour {
        Behaviour::Idle { channels }
        | Behaviour::Subscribe { channels, .. }
        | Behaviour::Presence { channels, .. }
        | Behaviour::Churn { channels, .. } => channels.get(i).cloned(),
        _ => None,
    }
}

/// Subscribes (Pusher: waits for `subscription_succeeded`) and hands the socket to the receive
/// thread.
async fn subscribe_and_hand_off(
    id: usize,
    mut ws: Ws,
    socket_id: &str,
    plan: &Plan,
    st: &Stats,
    receiver: &Receiver,
) -> End {
    let channel = channel_index(id, plan).unwrap_or(0);
    let pusher = matches!(plan.target, Target::Pusher { .. });
    if pusher {
        let name = channel_of(id, plan).unwrap_or_default();
        if ws
            .send_text(&subscribe_message(plan, id, socket_id, &name, id / plan.conns_per_user.max(1)))
            .await
            .is_err()
        {
            return End::Closed;
        }
        let confirmed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match ws.recv().await {
                    Ok(Some(f)) if f.opcode == 1 => {
                        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&f.payload) else {
                            continue;
                        };
                        match msg["event"].as_str().unwrap_or("") {
                            "pusher_internal:subscription_succeeded" => return Some(true),
                            "pusher:subscription_error" | "pusher:error" => return Some(false),
                            "pusher:ping" => {
                                let _ = ws.send_text(r#"{"event":"pusher:pong","data":{}}"#).await;
                            }
                            _ => {}
                        }
                    }
                    Ok(Some(f)) if f.opcode == 9 => {
                        let _ = ws.send(10, &f.payload).await;
                    }
                    Ok(Some(f)) if f.opcode == 8 => return None,
                    Ok(Some(_)) => {}
                    _ => return None,
                }
            }
        })
        .await;
        match confirmed {
            Ok(Some(true)) => Stats::add(&st.subscribed, 1),
            Ok(Some(false)) => Stats::add(&st.subscribe_errors, 1),
            _ => {
                st.fail(Failure::Other);
                return End::Closed;
            }
        }
    } else {
        // A plain broadcast server subscribes by path, when the WebSocket opens.
        Stats::add(&st.subscribed, 1);
    }
    let (stream, leftover) = ws.into_parts();
    match stream.into_std() {
        Ok(stream) => {
            receiver.add(NewConn { stream, leftover, channel: channel as u16, pusher });
            End::HandedOff
        }
        Err(_) => End::Closed,
    }
}
