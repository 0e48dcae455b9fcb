//! Shards: one pinned glommio executor per core, each with its own listener, connections and
//! timers. Everything glommio-specific lives under this module, so the runtime can be swapped.
//!
//! Architecture Invariant: shards share no mutable state. They talk only through bounded SPSC
//! channels: commands from the control executor, the core-to-core mesh, and the rings to the
//! Redis bridge and the webhook dispatcher.

mod accept;
mod conn_task;
mod control;
mod flusher;
mod listener;
mod local;
mod mesh;
mod socket;
mod sys;
mod ticker;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, SharedReceiver};
use glommio::{LocalExecutorBuilder, Placement};

use crate::cluster::CoreLink;
use crate::config::Config;
use crate::core::Core;
use crate::core::io::CoreId;
use crate::pusher::socket_id::{MAX_CORES, NodeId, random_node_id};
use crate::pusher::{self, Pusher};
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

/// What one shard is given when it starts.
struct ShardParts {
    shard: CoreId,
    node: NodeId,
    cfg: Config,
    listener: socket2::Socket,
    metrics: Option<socket2::Socket>,
    links: mesh::Links,
    webhooks: Option<crate::webhooks::Sink>,
    cluster: Option<CoreLink>,
    commands: SharedReceiver<Command>,
    /// TLS for the main listener (None: plain TCP).
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Starts every shard and the control executor; returns when all shards have drained.
pub fn run(mut cfg: Config) -> Result<(), String> {
    let count = cfg.executor_count();
    if count > usize::from(MAX_CORES) {
        return Err(format!("at most {MAX_CORES} cores per process (socket ids name the core)"));
    }
    // Fix the count now: inside a pinned executor the affinity mask shows one core.
    cfg.cores = count;
    let addr = SocketAddr::new(cfg.host, cfg.port);
    let (listeners, backlog) =
        listener::bind_all(addr, count, cfg.backlog, cfg.share_port).map_err(|e| e.to_string())?;
    let bound = listeners[0].local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(addr);
    let mut metrics = metrics_listener(&cfg)?;
    let tls = cfg.load_tls()?;
    let signals = control::signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let node = node_id(&cfg);
    let mut clusters = cluster_links(&cfg, node, count);
    let mut sinks = crate::webhooks::start(&cfg.apps, count).into_iter();
    let mut links = mesh::build(count, cfg.ring_capacity).into_iter();
    let cpus: Vec<usize> =
        core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect()).unwrap_or_default();

    let mut commands = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for (i, listener) in listeners.into_iter().enumerate() {
        let (tx, rx) = shared_channel::new_bounded(16);
        commands.push(tx);
        let shard = CoreId(u16::try_from(i).expect("checked against MAX_CORES"));
        let parts = ShardParts {
            shard,
            node,
            cfg: cfg.clone(),
            listener,
            // Core 0 also serves the metrics listener, if any.
            metrics: if i == 0 { metrics.take() } else { None },
            links: links.next().expect("one mesh end per core"),
            webhooks: sinks.next().flatten(),
            cluster: clusters.as_mut().map(|c| c.remove(0)),
            commands: rx,
            tls: tls.clone(),
        };
        let placement = cpus.get(i).map_or(Placement::Unbound, |&cpu| Placement::Fixed(cpu));
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("corecast-{i}"))
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .spawn(move || shard_main(parts))
            .map_err(|e| format!("cannot start executor {i}: {e}"))?;
        handles.push(handle);
    }
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("corecast-control")
        .io_memory(IO_MEMORY)
        .spawn({
            let cfg = cfg.clone();
            move || control::run(signals, commands, cfg)
        })
        .map_err(|e| format!("cannot start the control executor: {e}"))?;

    log_start(&cfg, bound, count, backlog, node);
    for h in handles {
        h.join().map_err(|e| format!("a shard failed: {e}"))?;
    }
    log::info!("all shards drained: exiting");
    Ok(())
}

fn metrics_listener(cfg: &Config) -> Result<Option<socket2::Socket>, String> {
    if cfg.metrics_port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(cfg.host, cfg.metrics_port);
    let (mut s, _) = listener::bind_all(addr, 1, 1024, false).map_err(|e| e.to_string())?;
    Ok(Some(s.remove(0)))
}

fn node_id(cfg: &Config) -> NodeId {
    let preferred = (cfg.node_id != 0).then_some(NodeId(cfg.node_id));
    if cfg.redis.is_empty() {
        preferred.unwrap_or_else(random_node_id)
    } else {
        crate::cluster::claim_node_id(&cfg.redis, &cfg.redis_prefix, u64::from(cfg.node_ttl), preferred)
    }
}

fn cluster_links(cfg: &Config, node: NodeId, count: usize) -> Option<Vec<CoreLink>> {
    if cfg.redis.is_empty() {
        return None;
    }
    let setup = crate::cluster::NodeSetup {
        node,
        ttl: u64::from(cfg.node_ttl),
        apps: cfg.apps.iter().map(|a| a.id.clone()).collect(),
        deflate: cfg.permessage_deflate,
    };
    Some(crate::cluster::start(&cfg.redis, &cfg.redis_prefix, setup, count))
}

fn log_start(cfg: &Config, bound: SocketAddr, count: usize, backlog: u32, node: NodeId) {
    log::info!(
        "listening on {bound}{} with {count} shard(s), backlog {backlog}, at most {} WebSocket connections, node {node}",
        if cfg.tls() { " (TLS)" } else { "" },
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
}

/// Renders `/metrics` or `/status.json`: the cores' reports with the figures of the threads off
/// the cores.
fn render(
    reports: &[crate::pusher::query::CoreReport],
    apps: &[crate::pusher::apps::App],
    what: pusher::Rendering,
) -> String {
    let w = crate::webhooks::counters();
    let c = crate::cluster::status();
    let process = crate::metrics::Process {
        webhooks_queued: w.queued,
        webhooks_sent: w.sent,
        webhooks_failed: w.failed,
        webhooks_dropped: w.dropped,
        cluster: c.enabled.then_some(crate::metrics::Cluster {
            connected: c.connected,
            nodes: c.nodes,
            published: c.published,
            received: c.received,
            dropped: c.dropped,
        }),
        rss: crate::metrics::process_rss(),
    };
    match what {
        pusher::Rendering::Metrics => crate::metrics::render(reports, apps, &process),
        pusher::Rendering::Status => crate::metrics::status_json(reports, apps, &process),
    }
}

/// Builds this shard's core and runs its tasks until a drain command; then drains.
async fn shard_main(p: ShardParts) {
    let faults =
        cfg!(debug_assertions) && std::env::var_os("CORECAST_DEBUG_FAULTS").is_some_and(|v| v == "1");
    let service = Pusher::new(pusher::Config {
        apps: p.cfg.apps.clone(),
        node: p.node,
        render,
        status_token: p.cfg.status_token.clone(),
        faults,
    });
    let mut core = Core::new(p.shard, p.cfg.engine_settings(), service, 0);
    core.tick(0, ticker::unix_now());
    if let Some(sink) = p.webhooks {
        core.s.set_webhooks(Box::new(sink));
    }
    let cluster_rx = p.cluster.map(|link| {
        core.s.set_cluster(Box::new(link.tx));
        link.rx
    });
    local::install(core);
    local::set_tls(p.tls);
    let mesh = glommio::spawn_local(mesh::run(p.links));
    let flusher = glommio::spawn_local(flusher::run());
    let bridge = cluster_rx.map(|mut rx| {
        glommio::spawn_local(async move {
            loop {
                let msg = rx.pop().await;
                local::with_core(|core| core.with_service(|s, e| s.on_cluster(e, msg)));
            }
        })
    });
    let listener = sys::adopt_listener(p.listener);
    let accept = glommio::spawn_local(accept::run(listener, p.cfg.socket_send_buffer, false));
    let metrics = p.metrics.map(|m| glommio::spawn_local(accept::run(sys::adopt_listener(m), 0, true)));
    let ticker = glommio::spawn_local(ticker::run());
    let commands = p.commands.connect().await;
    log::debug!("shard {} ready", p.shard);

    // New TLS configurations (SIGHUP) until a drain command (or the control executor is gone).
    while let Some(Command::Tls(config)) = commands.recv().await {
        local::set_tls(Some(config));
    }
    // Stop accepting: dropping the listener closes this core's socket in the reuseport group.
    accept.cancel().await;
    if let Some(m) = metrics {
        m.cancel().await;
    }
    local::with_core(Core::start_drain);
    let deadline = Instant::now() + Duration::from_secs(u64::from(p.cfg.drain_timeout));
    while local::with_core(|c| c.e.ws_count()) > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let left = local::with_core(|c| c.e.ws_count());
    if left > 0 {
        log::warn!("shard {}: drain timeout with {left} connection(s) still open: closing them", p.shard);
    } else {
        log::debug!("shard {} drained", p.shard);
    }
    ticker.cancel().await;
    mesh.cancel().await;
    flusher.cancel().await;
    if let Some(b) = bridge {
        b.cancel().await;
    }
    drop(local::take());
}
