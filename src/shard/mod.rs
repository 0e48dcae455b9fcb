//! Shards: one pinned glommio executor per core, each with its own listener, connections and
//! timers. Everything glommio-specific lives under this module, so the runtime can be swapped.
//!
//! Architecture Invariant: shards share no mutable state. They talk only through bounded SPSC
//! channels (glommio `shared_channel`): commands from the control executor, and (later) the
//! core-to-core mesh.

pub mod accept;
pub mod conn_task;
pub mod control;
pub mod listener;
pub mod local;
pub mod mesh;
pub mod sys;
mod ticker;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, SharedReceiver};
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::core::{Core, Settings};
use control::Command;

/// io_uring registered-buffer memory per executor. glommio's default pins 10 MiB per executor;
/// corecast does no file I/O, and sockets use the caller's buffers.
const IO_MEMORY: usize = 64 * 1024;

/// Submission-queue entries of each executor's main io_uring. glommio cancels its preemption
/// timer on every reactor cycle, and the kernel finds the request to cancel by scanning one
/// bucket of a hash table shared with every pending socket poll; the table has
/// 2^(log2(completion entries) − 5) buckets, capped at 256. glommio's default depth (128) gives
/// 8 buckets, so with 10,000 idle sockets each cancel scanned ~1,250 entries (measured: 16 % of
/// the server's CPU during fan-out). 4,096 gives the maximum 256 buckets.
const RING_DEPTH: usize = 4096;

/// Starts every shard and the control executor; returns when all shards have drained.
pub fn run(mut cfg: Config) -> Result<(), String> {
    let count = cfg.executor_count();
    // Fix the count now: inside a pinned executor the affinity mask shows one core.
    cfg.cores = count;
    let cpus: Vec<usize> =
        core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect()).unwrap_or_default();
    let addr = SocketAddr::new(cfg.host, cfg.port);
    let (sockets, backlog) = listener::bind_all(addr, count, cfg.backlog).map_err(|e| e.to_string())?;
    let bound = sockets[0].local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
    let signals = control::signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let node = if !cfg.redis.is_empty() {
        crate::cluster::claim_node_id(&cfg.redis, &cfg.redis_prefix, cfg.node_ttl as u64, cfg.node_id)
    } else if cfg.node_id == 0 {
        crate::pusher::socket_id::random_node_id()
    } else {
        cfg.node_id
    };
    let clusters: Vec<Option<crate::cluster::CoreLink>> = if cfg.redis.is_empty() {
        (0..count).map(|_| None).collect()
    } else {
        let apps = cfg.apps.iter().map(|a| a.id.clone()).collect();
        crate::cluster::start(&cfg.redis, &cfg.redis_prefix, node, cfg.node_ttl as u64, apps, count)
            .into_iter()
            .map(Some)
            .collect()
    };
    let mut metrics_socket = if cfg.metrics_port != 0 {
        let addr = SocketAddr::new(cfg.host, cfg.metrics_port);
        let (mut s, _) = listener::bind_all(addr, 1, 1024).map_err(|e| e.to_string())?;
        Some(s.remove(0))
    } else {
        None
    };
    let links = mesh::build(count, cfg.ring_capacity);
    let sinks = crate::webhooks::start(&cfg.apps, count);

    let mut commands = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for (shard, (((socket, links), sink), cluster)) in
        sockets.into_iter().zip(links).zip(sinks).zip(clusters).enumerate()
    {
        let (tx, rx) = shared_channel::new_bounded(16);
        commands.push(tx);
        let placement = match cpus.get(shard) {
            Some(&cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let cfg = cfg.clone();
        // Core 0 also serves the metrics listener, if any.
        let metrics = if shard == 0 { metrics_socket.take() } else { None };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("corecast-{shard}"))
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .spawn(move || shard_main(shard as u32, node, cfg, (socket, metrics), links, (sink, cluster), rx))
            .map_err(|e| format!("cannot start executor {shard}: {e}"))?;
        handles.push(handle);
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("corecast-control")
        .io_memory(IO_MEMORY)
        .spawn(move || control::run(signals, commands))
        .map_err(|e| format!("cannot start the control executor: {e}"))?;

    log::info!(
        "listening on {bound} with {count} shard(s), backlog {backlog}, at most {} WebSocket connections, node {node}",
        cfg.max_connections
    );
    if !cfg.redis.is_empty() {
        log::info!("cluster: Redis {} (prefix {}, node TTL {} s)", cfg.redis, cfg.redis_prefix, cfg.node_ttl);
    }
    for app in &cfg.apps {
        log::info!(
            "app id={} key={} client_events={} user_authentication={} webhooks={}",
            app.id,
            app.key,
            app.client_events,
            app.user_authentication,
            app.webhooks.len()
        );
    }
    for h in handles {
        h.join().map_err(|e| format!("a shard failed: {e}"))?;
    }
    log::info!("all shards drained: exiting");
    Ok(())
}

async fn shard_main(
    shard: u32,
    node: u32,
    cfg: Config,
    (socket, metrics): (socket2::Socket, Option<socket2::Socket>),
    links: mesh::Links,
    (sink, cluster): (Option<crate::webhooks::Sink>, Option<crate::cluster::CoreLink>),
    commands: SharedReceiver<Command>,
) {
    let started = Instant::now();
    let mut core = Core::new(shard, Settings::from_config(&cfg, node), Box::new(sys::RawSend), 0);
    core.set_unix_time(ticker::unix_now());
    core.set_webhook_sink(sink);
    let cluster_rx = cluster.map(|mut link| {
        let rx = link.rx.take().expect("a fresh link");
        core.set_cluster(link.tx);
        rx
    });
    local::install(core);
    let mesh = glommio::spawn_local(mesh::run(links));
    let bridge = cluster_rx.map(|mut rx| {
        glommio::spawn_local(async move {
            loop {
                let msg = rx.pop().await;
                local::with_core(|core| core.on_cluster(msg));
            }
        })
    });
    let listener = sys::adopt_listener(socket);
    let accept = glommio::spawn_local(accept::run(listener, cfg.socket_send_buffer, false));
    let metrics = metrics.map(|m| glommio::spawn_local(accept::run(sys::adopt_listener(m), 0, true)));
    let ticker = glommio::spawn_local(ticker::run(started));
    let commands = commands.connect().await;
    log::debug!("shard {shard} ready");

    match commands.recv().await {
        Some(Command::Drain) | None => {}
    }
    // Stop accepting: dropping the listener closes this core's socket in the reuseport group.
    accept.cancel().await;
    if let Some(m) = metrics {
        m.cancel().await;
    }
    local::with_core(Core::start_drain);
    let deadline = started.elapsed() + Duration::from_secs(cfg.drain_timeout as u64);
    while local::with_core(|c| c.ws_count()) > 0 && started.elapsed() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = local::with_core(|c| c.ws_count());
    if left > 0 {
        log::warn!("shard {shard}: drain timeout with {left} connection(s) still open: closing them");
    } else {
        log::debug!("shard {shard} drained");
    }
    ticker.cancel().await;
    mesh.cancel().await;
    if let Some(b) = bridge {
        b.cancel().await;
    }
    drop(local::take());
}
