//! `/metrics` in the Prometheus text format. Each core keeps plain counters (`core::Stats`); a
//! scrape asks every core for its figures over the mesh and sums them here, so the hot path has
//! no atomics and no locks. Webhook figures come from the webhook sender (`webhooks::counters`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::pusher::apps::App;
use crate::pusher::query::CoreReport;

type Labels = Vec<(String, String)>;

fn core_label(r: &CoreReport) -> Labels {
    vec![("core".into(), r.shard.to_string())]
}

struct Builder {
    registry: Registry,
}

impl Builder {
    fn counter(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, u64)>) {
        let family = Family::<Labels, Counter>::default();
        for (labels, v) in series {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, help, family);
    }

    fn gauge(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, i64)>) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, v) in series {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, help, family);
    }

    /// A counter summed over cores.
    fn total(&mut self, name: &str, help: &str, reports: &[CoreReport], f: impl Fn(&CoreReport) -> u64) {
        self.single_counter(name, help, reports.iter().map(&f).sum());
    }

    /// One metric per row, in order.
    fn core_figures(&mut self, reports: &[CoreReport], rows: &[Figure]) {
        for &(name, kind, help, f) in rows {
            match kind {
                Kind::Total => self.total(name, help, reports, f),
                Kind::PerCoreCounter => {
                    self.counter(name, help, reports.iter().map(|r| (core_label(r), f(r))))
                }
                Kind::PerCoreGauge => {
                    self.gauge(name, help, reports.iter().map(|r| (core_label(r), f(r) as i64)))
                }
                Kind::AllCoresGauge => self.single_gauge(name, help, reports.iter().map(f).sum()),
            }
        }
    }

    fn single_counter(&mut self, name: &str, help: &str, v: u64) {
        self.registry.register(name, help, ConstCounter::new(v));
    }

    fn single_gauge(&mut self, name: &str, help: &str, v: u64) {
        self.registry.register(name, help, ConstGauge::new(v as i64));
    }
}

/// How a figure of each core's report becomes a metric.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A counter summed over cores.
    Total,
    /// A counter with a series per core.
    PerCoreCounter,
    /// A gauge with a series per core.
    PerCoreGauge,
    /// A gauge summed over cores.
    AllCoresGauge,
}

/// A metric taken from every core's report: name, kind, help, the figure.
type Figure = (&'static str, Kind, &'static str, fn(&CoreReport) -> u64);

use Kind::*;

/// The connection counts, before `connections_rejected`.
#[rustfmt::skip]
const CONNECTION_FIGURES: &[Figure] = &[
    ("websocket_connections", PerCoreGauge, "Open WebSocket connections, per core", |r| r.websockets),
    ("websocket_connections_all", AllCoresGauge, "Open WebSocket connections, all cores", |r| r.websockets),
    ("connections", PerCoreGauge, "Open TCP connections (WebSocket and HTTP), per core", |r| r.connections),
    ("connections_accepted", Total, "TCP connections accepted", |r| r.engine.accepted),
];

/// The other per-core figures, after `connections_rejected`.
#[rustfmt::skip]
const CORE_FIGURES: &[Figure] = &[
    ("unauthorized_disconnects", Total, "Connections closed for not signing in (or subscribing to a private or presence channel) in time", |r| r.pusher.unauthorized_closed),
    ("watchlist_events", Total, "Watchlist online/offline frames queued for watchers", |r| r.pusher.watchlist_events),
    ("subscription_count_events", Total, "Live subscription_count events published (per channel and change)", |r| r.pusher.subscription_count_events),
    ("handshakes", Total, "WebSocket handshakes completed", |r| r.engine.ws_opened),
    ("handshake_timeouts", Total, "Connections closed for not completing a request in time", |r| r.engine.handshake_timeouts),
    ("ping_timeouts", Total, "Connections closed for not answering a heartbeat", |r| r.engine.ping_timeouts),
    ("protocol_errors", Total, "Connections failed for breaking RFC 6455", |r| r.engine.protocol_errors),
    ("messages_in", Total, "WebSocket messages received", |r| r.engine.messages_in),
    ("frames_out", Total, "WebSocket frames and HTTP responses written", |r| r.engine.frames_out),
    ("frames_written", PerCoreCounter, "Frames (and HTTP responses) completely written, per core", |r| r.engine.frames_out),
    ("send_syscalls", PerCoreCounter, "Send system calls made, per core (frames_written / send_syscalls = frames per send)", |r| r.engine.sends),
    ("queued_bytes", PerCoreGauge, "Bytes queued for connections, per core", |r| r.queued_bytes),
    ("flush_backlog", PerCoreGauge, "Connections waiting for the flusher, per core", |r| r.dirty),
    ("flush_holds", Total, "Times a core's flusher paused for a connection's --coalesce-ms hold to end", |r| r.engine.flush_holds),
    ("connection_state_bytes", PerCoreGauge, "Bytes of per-connection state the core accounts for (slab, queues, partial input, timers), per core", |r| r.conn_state_bytes),
    ("api_backpressure", Total, "HTTP API publishes refused with 503 while delivery was backlogged", |r| r.pusher.backpressure),
    ("questions_expired", Total, "Questions to other cores or nodes answered by their deadline", |r| r.pusher.questions_expired),
    ("bytes_in", Total, "Bytes received", |r| r.engine.bytes_in),
    ("bytes_out", Total, "Bytes sent", |r| r.engine.bytes_out),
    ("published", Total, "Events published (per channel, counted once on the publishing core)", |r| r.pusher.published),
    ("deliveries", Total, "Event frames queued for subscribers", |r| r.pusher.deliveries),
    ("deflate_negotiated", Total, "WebSockets that negotiated permessage-deflate", |r| r.engine.deflate_negotiated),
    ("deflate_frames", Total, "Fan-out frames sent compressed", |r| r.engine.deflate_frames),
    ("deflate_bytes_saved", Total, "Bytes compressed fan-out frames saved against their plain copies", |r| r.engine.deflate_bytes_saved),
    ("slow_consumer_disconnects", Total, "Subscribers cut off for not reading", |r| r.engine.slow_consumers),
    ("ring_depth", PerCoreGauge, "Messages waiting for a core-to-core ring, per core", |r| r.ring_depth),
    ("ring_overflows", Total, "Broadcasts dropped because a core's ring stayed full", |r| r.pusher.ring_overflows),
    ("channels", PerCoreGauge, "Channels with local subscribers, per core", |r| r.channels),
    ("presence_members", AllCoresGauge, "Presence members (distinct users per channel), all channels", |r| r.presence_members),
];

/// The process's resident memory in bytes (0 if /proc is unreadable), read once per scrape.
pub(crate) fn process_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Figures from outside the cores: the webhook sender's and the Redis bridge's counters, and
/// the process's resident memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Process {
    /// Webhook batches waiting to be sent.
    pub(crate) webhooks_queued: u64,
    /// Webhook requests answered 2xx.
    pub(crate) webhooks_sent: u64,
    /// Webhook attempts that failed.
    pub(crate) webhooks_failed: u64,
    /// Webhook events dropped by the sender.
    pub(crate) webhooks_dropped: u64,
    /// The Redis bridge's figures, with --redis.
    pub(crate) cluster: Option<Cluster>,
    /// Resident memory of the process, in bytes.
    pub(crate) rss: u64,
}

/// The Redis bridge's figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cluster {
    pub(crate) connected: bool,
    pub(crate) nodes: u64,
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
}

/// Renders every core's report (one per core) and the process's figures as a scrape.
pub(crate) fn render(reports: &[CoreReport], apps: &[App], process: &Process) -> String {
    let mut reports = reports.to_vec();
    reports.sort_by_key(|r| r.shard);
    let mut b = Builder { registry: Registry::with_prefix("corecast") };
    b.core_figures(&reports, CONNECTION_FIGURES);
    b.counter(
        "connections_rejected",
        "WebSocket upgrades refused, by reason",
        [
            (vec![("reason".into(), "full".into())], reports.iter().map(|r| r.engine.rejected_full).sum()),
            (
                vec![("reason".into(), "draining".into())],
                reports.iter().map(|r| r.engine.rejected_draining).sum(),
            ),
            (vec![("reason".into(), "origin".into())], reports.iter().map(|r| r.pusher.origin_refused).sum()),
        ],
    );
    b.core_figures(&reports, CORE_FIGURES);
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for r in &reports {
        for (s, n) in &r.pusher.api_requests {
            *statuses.entry(*s).or_default() += n;
        }
    }
    b.counter(
        "http_api_requests",
        "HTTP API requests, by response status",
        statuses.into_iter().map(|(s, n)| (vec![("status".into(), s.to_string())], n)),
    );
    b.gauge(
        "app_connections",
        "Open connections per app",
        apps.iter().enumerate().map(|(i, a)| {
            let n: u64 = reports.iter().map(|r| r.app_connections.get(i).copied().unwrap_or(0)).sum();
            (vec![("app".into(), a.id.clone())], n as i64)
        }),
    );
    let p = process;
    let core_dropped: u64 = reports.iter().map(|r| r.pusher.webhooks_dropped).sum();
    b.single_gauge("webhook_queue_depth", "Webhook batches waiting to be sent", p.webhooks_queued);
    b.single_counter("webhooks_sent", "Webhook requests answered 2xx", p.webhooks_sent);
    b.single_counter(
        "webhooks_failed",
        "Webhook attempts that failed (each retry counts)",
        p.webhooks_failed,
    );
    b.single_counter(
        "webhooks_dropped",
        "Webhook events dropped (queue full or retries exhausted)",
        p.webhooks_dropped + core_dropped,
    );
    if let Some(c) = p.cluster {
        b.single_gauge("cluster_connected", "1 while the Redis bridge is connected", u64::from(c.connected));
        b.single_gauge("cluster_nodes", "Live nodes seen in Redis (this one included)", c.nodes);
        b.single_counter("cluster_published", "Events published to the other nodes", c.published);
        b.single_counter("cluster_received", "Messages received from the other nodes", c.received);
        let core_dropped: u64 = reports.iter().map(|r| r.pusher.cluster_dropped).sum();
        b.single_counter(
            "cluster_dropped",
            "Cross-node messages dropped (Redis down or rings full)",
            c.dropped + core_dropped,
        );
    }
    b.single_gauge("process_resident_memory_bytes", "Resident memory of the process", p.rss);
    let mut out = String::new();
    encode(&mut out, &b.registry).expect("writing to a String cannot fail");
    out
}

/// The figures the status page shows, as JSON: per core and totals (counters are cumulative;
/// the page turns them into rates), webhooks, the cluster and the process.
pub(crate) fn status_json(reports: &[CoreReport], apps: &[App], process: &Process) -> String {
    let mut reports = reports.to_vec();
    reports.sort_by_key(|r| r.shard);
    let core = |r: &CoreReport| {
        serde_json::json!({
            "core": r.shard,
            "connections": r.connections,
            "websockets": r.websockets,
            "channels": r.channels,
            "presence_members": r.presence_members,
            "messages_in": r.engine.messages_in,
            "frames_out": r.engine.frames_out,
            "sends": r.engine.sends,
            "deliveries": r.pusher.deliveries,
            "published": r.pusher.published,
            "bytes_in": r.engine.bytes_in,
            "bytes_out": r.engine.bytes_out,
            "queued_bytes": r.queued_bytes,
            "slow_consumers": r.engine.slow_consumers,
        })
    };
    let sum = |f: fn(&CoreReport) -> u64| reports.iter().map(f).sum::<u64>();
    let apps: Vec<serde_json::Value> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let n: u64 = reports.iter().map(|r| r.app_connections.get(i).copied().unwrap_or(0)).sum();
            serde_json::json!({"id": a.id, "connections": n})
        })
        .collect();
    serde_json::json!({
        "cores": reports.iter().map(core).collect::<Vec<_>>(),
        "totals": {
            "connections": sum(|r| r.connections),
            "websockets": sum(|r| r.websockets),
            "channels": reports.iter().flat_map(|r| &r.channel_hashes).collect::<std::collections::HashSet<_>>().len(),
            "presence_members": sum(|r| r.presence_members),
            "messages_in": sum(|r| r.engine.messages_in),
            "frames_out": sum(|r| r.engine.frames_out),
            "sends": sum(|r| r.engine.sends),
            "deliveries": sum(|r| r.pusher.deliveries),
            "published": sum(|r| r.pusher.published),
            "slow_consumers": sum(|r| r.engine.slow_consumers),
        },
        "apps": apps,
        "webhooks": {
            "queued": process.webhooks_queued,
            "sent": process.webhooks_sent,
            "failed": process.webhooks_failed,
            "dropped": process.webhooks_dropped + sum(|r| r.pusher.webhooks_dropped),
        },
        "cluster": process.cluster.map(|c| serde_json::json!({
            "connected": c.connected, "nodes": c.nodes, "published": c.published, "received": c.received,
        })),
        "rss_bytes": process.rss,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: u16, sends: u64, queued: u64, published: u64, members: u64) -> CoreReport {
        let mut r =
            CoreReport { shard, queued_bytes: queued, presence_members: members, ..Default::default() };
        r.engine.sends = sends;
        r.pusher.published = published;
        r
    }

    /// Each kind of core figure renders as its metric type: per-core series, or one sum.
    #[test]
    fn core_figures_render_per_core_or_summed_by_kind() {
        let reports = [report(1, 11, 13, 17, 19), report(0, 23, 29, 31, 37)];
        let out = render(&reports, &[], &Process::default());
        for line in [
            "# TYPE corecast_send_syscalls counter",
            "corecast_send_syscalls_total{core=\"0\"} 23",
            "corecast_send_syscalls_total{core=\"1\"} 11",
            "# TYPE corecast_queued_bytes gauge",
            "corecast_queued_bytes{core=\"0\"} 29",
            "corecast_queued_bytes{core=\"1\"} 13",
            "# HELP corecast_published Events published (per channel, counted once on the publishing core).",
            "# TYPE corecast_published counter",
            "corecast_published_total 48",
            "# TYPE corecast_presence_members gauge",
            "corecast_presence_members 56",
        ] {
            assert!(out.lines().any(|l| l == line), "no line {line:?} in:\n{out}");
        }
    }
}
