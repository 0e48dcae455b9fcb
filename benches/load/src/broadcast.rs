//! `broadcast`: many subscribed connections held, then a broadcast that reaches every one of them
//! (benches/million.sh runs it against dozens of nodes sharing one port).
//!
//! Connections ramp at `--rate` with at most `--max-pending` attempts in flight; most subscribe
//! to one of a few large public channels, `--presence-percent` of them to presence channels of at
//! most `--presence-size` users. They are held for `--hold` seconds, answering the server's
//! heartbeats, and then get `--rounds` broadcasts: one event on every channel at once, so every
//! connection receives exactly one event per round. Reported: connections held, connects/s, the
//! server's memory per connection (RSS summed over its processes, each process's baseline apart),
//! kernel memory per socket, the harness's memory per socket, CPU, and per round deliveries/s,
//! loss and publish→deliver latency.

use std::time::Duration;

use serde_json::{Value, json};

use crate::coord::{Common, Run, percentiles};
use crate::plan::{Behaviour, Layout, Target};
use crate::procstat;
use crate::publish;
use crate::scenarios::{Outcome, channel_names, plans, round};

// The `broadcast` subcommand's own flags (main.rs flattens them into it).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Large public channels most connections share.
    #[arg(long, default_value_t = 4)]
    pub public_channels: usize,
    /// Connections on presence channels, in percent.
    #[arg(long, default_value_t = 2)]
    pub presence_percent: u32,
    /// Users per presence channel (at most the server's max_presence_members, 100 by default).
    #[arg(long, default_value_t = 100)]
    pub presence_size: usize,
    /// Connection attempts per second.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Most attempts in flight (all workers together; 0: no limit): a server slower than
    /// --rate slows the ramp instead of timing attempts out.
    #[arg(long, default_value_t = 2_000)]
    pub max_pending: usize,
    /// Seconds to hold every connection before broadcasting (heartbeats go on).
    #[arg(long, default_value_t = 60.0)]
    pub hold: f64,
    /// Broadcasts: one event on every channel each.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seconds to wait for a round's deliveries.
    #[arg(long, default_value_t = 60.0)]
    pub round_timeout: f64,
    /// Bytes of event data.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Events per HTTP API request (batch_events).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
}

/// One process of the server at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct NodeMark {
    rss: u64,
    anon: u64,
    fds: u64,
}

fn node_marks(pids: &[u32]) -> Vec<Option<NodeMark>> {
    pids.iter()
        .map(|&p| {
            Some(NodeMark {
                rss: procstat::rss_bytes(p)?,
                anon: procstat::status_bytes(p, "RssAnon:").unwrap_or(0),
                fds: procstat::open_fds(p)?,
            })
        })
        .collect()
}

/// A line on stderr as each phase begins or ends (benches/million.sh keeps it in harness.log).
fn progress(line: &str) {
    eprintln!("[broadcast] {line}");
}

/// min / mean / max of some values.
fn spread(v: &[f64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({"min": round(min), "mean": round(mean), "max": round(max)})
}

fn per(num: Option<f64>, den: u64) -> Value {
    match num {
        Some(n) if den > 0 => json!((n / den as f64).round()),
        _ => Value::Null,
    }
}

/// Subscribers per channel when every connection of `0..n` subscribes as `layout` says.
fn subscribers(layout: Layout, n: usize, channels: usize) -> Vec<u64> {
    let mut v = vec![0u64; channels];
    for i in 0..n {
        v[layout.channel(i, i, channels)] += 1;
    }
    v
}

pub fn run(common: &Common, a: &Args) -> Result<Outcome, String> {
    let Target::Pusher { key, secret } = &common.target else {
        return Err("broadcast needs --protocol pusher (channels, presence and the HTTP API)".into());
    };
    if a.connections == 0 || a.presence_percent > 100 || a.presence_size == 0 || a.rounds == 0 {
        return Err("broadcast needs --connections ≥ 1, --presence-percent ≤ 100, --presence-size ≥ 1 and --rounds ≥ 1".into());
    }
    if a.public_channels == 0 && a.presence_percent < 100 {
        return Err("--public-channels 0 needs --presence-percent 100".into());
    }
    let pct = a.presence_percent as usize;
    let presence_conns = if a.public_channels == 0 {
        a.connections
    } else {
        (0..a.connections).filter(|i| i % 100 < pct).count()
    };
    let presence_channels = presence_conns.div_ceil(a.presence_size);
    let mut names = channel_names("broadcast-", a.public_channels);
    names.extend(channel_names("presence-broadcast-", presence_channels));
    if names.len() > usize::from(u16::MAX) {
        return Err(format!("{} channels: at most 65,535 (raise --presence-size)", names.len()));
    }
    let layout = Layout::Mix { public: a.public_channels, presence_percent: a.presence_percent };
    let subs = subscribers(layout, a.connections, names.len());

    let mut worker_plans = plans(
        common,
        &[a.connections],
        Behaviour::Subscribe { channels: names.clone(), publishers: 1 },
        a.rate,
        0,
        0,
        1,
    );
    let workers = worker_plans.len();
    for p in &mut worker_plans {
        p.layout = layout;
        p.max_pending = if a.max_pending == 0 { 0 } else { a.max_pending.div_ceil(workers).max(1) };
    }

    // Before any connection: each server process's baseline, and the machine's.
    let pids = common.server_pids.clone();
    let nodes0 = node_marks(&pids);
    let slab0 = procstat::slab_bytes();
    let avail0 = procstat::meminfo_bytes("MemAvailable:");
    let mut run = Run::start(common, worker_plans);

    // Ramp.
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    let ramp_timeout = Duration::from_secs_f64(a.connections as f64 / a.rate.max(1.0) * 3.0 + 60.0);
    if !run.wait_level(0, ramp_timeout) {
        return Err(format!("the ramp did not finish within {} s", ramp_timeout.as_secs()));
    }
    let ramp = (run.elapsed() - t0).max(0.001);
    // Every worker has settled its attempts; its counters arrive with its next sample.
    let settled = |run: &Run| {
        let failed: u64 = run.failures().values().filter_map(Value::as_u64).sum();
        run.total("connected") + failed
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while settled(&run) < a.connections as u64 && std::time::Instant::now() < until {
        run.pump_for(Duration::from_millis(50));
    }
    let connected = run.total("connected");
    run.command("next");
    // Subscriptions confirmed (or refused) for every connection before the hold starts.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while run.total("subscribed") + run.total("subscribe_errors") < connected
        && std::time::Instant::now() < until
    {
        run.pump_for(Duration::from_millis(50));
    }
    let (ramp_server_cpu, ramp_harness_cpu) = run.cpu_since(&mark);
    let subscribed = run.total("subscribed");
    progress(&format!(
        "ramped: {connected} of {} connected in {ramp:.1} s, {subscribed} subscribed",
        a.connections
    ));
    let peak_connects = run.timeline.iter().map(|p| p.connects_per_s).fold(0.0, f64::max);

    // Hold, answering heartbeats.
    let (pongs0, closed0) = (run.total("pongs_sent"), run.total("closed"));
    let open_at_hold = run.total("open");
    let mark = run.cpu_mark();
    let hold_from = run.elapsed();
    progress(&format!("holding {open_at_hold} connections for {} s", a.hold));
    run.pump_for(Duration::from_secs_f64(a.hold));
    let (hold_server_cpu, hold_harness_cpu) = run.cpu_since(&mark);
    let held = run.total("open");
    progress(&format!("held {held} connections"));
    let min_open_in_hold =
        run.timeline.iter().filter(|p| p.t >= hold_from).map(|p| p.open).min().unwrap_or(held).min(held);
    let pongs = run.total("pongs_sent") - pongs0;
    let closed_in_hold = run.total("closed") - closed0;

    // Memory, held.
    let nodes1 = node_marks(&pids);
    let server_rss = procstat::rss_sum(&pids);
    let baseline = run.baseline_rss();
    let slab1 = procstat::slab_bytes();
    let avail1 = procstat::meminfo_bytes("MemAvailable:");
    let harness_rss = run.harness_rss();
    let growth = match (server_rss, baseline) {
        (Some(n), Some(b)) => Some(n as f64 - b as f64),
        _ => None,
    };
    let slab_growth = match (slab1, slab0) {
        (Some(n), Some(b)) => Some(n as f64 - b as f64),
        _ => None,
    };
    let avail_drop = match (avail0, avail1) {
        (Some(b), Some(n)) => Some(b as f64 - n as f64),
        _ => None,
    };
    let alive: Vec<(NodeMark, NodeMark)> =
        nodes0.iter().zip(&nodes1).filter_map(|(b, n)| Some(((*b)?, (*n)?))).collect();
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let nodes = json!({
        "processes": pids.len(),
        "alive_after_hold": alive.len(),
        "baseline_rss_mib": spread(&alive.iter().map(|(b, _)| mib(b.rss)).collect::<Vec<_>>()),
        "baseline_rss_anon_mib": spread(&alive.iter().map(|(b, _)| mib(b.anon)).collect::<Vec<_>>()),
        "baseline_rss_sum_mib": baseline.map(|b| round(mib(b))),
        "rss_held_mib": spread(&alive.iter().map(|(_, n)| mib(n.rss)).collect::<Vec<_>>()),
        // Descriptors opened since the start: the process's connections.
        "connections": spread(&alive.iter().map(|(b, n)| n.fds.saturating_sub(b.fds) as f64).collect::<Vec<_>>()),
    });

    // Broadcast rounds.
    let mut rounds = Vec::new();
    let mut lost_total = 0u64;
    for r in 1..=a.rounds {
        let open = run.total("open");
        let (d0, g0, m0, o0) = (
            run.total("deliveries"),
            run.total("seq_gaps"),
            run.total("misrouted"),
            run.total("out_of_order"),
        );
        let closed_before = run.total("closed");
        run.phase_reset();
        let mark = run.cpu_mark();
        let started = run.elapsed();
        let published = publish::http_round(
            common.publish_server,
            &common.app_id,
            key,
            secret,
            &names,
            r,
            a.payload,
            a.batch,
        )
        .map_err(|e| format!("round {r}: publishing: {e}"))?;
        let (accepted, outcome) = published;
        // Every open connection is on one channel; with a channel refused, its subscribers
        // (as laid out) expect nothing.
        let expected = if accepted.len() == names.len() {
            open
        } else {
            accepted.iter().map(|&c| subs[c]).sum::<u64>().min(open)
        };
        let until = std::time::Instant::now() + Duration::from_secs_f64(a.round_timeout);
        while run.total("deliveries") - d0 < expected && std::time::Instant::now() < until {
            run.pump_for(Duration::from_millis(100));
        }
        let wall = run.elapsed() - started;
        // Anything extra (duplicates) shows within a moment more.
        run.pump_for(Duration::from_millis(1_000));
        let (server_cpu, harness_cpu) = run.cpu_since(&mark);
        let received = run.total("deliveries") - d0;
        let lost = expected.saturating_sub(received);
        lost_total += lost;
        let latency = percentiles(&run.phase_latency);
        let last_ms = latency["max_ms"].as_f64();
        progress(&format!(
            "round {r}: {received} of {expected} delivered, last after {} ms",
            last_ms.unwrap_or(0.0)
        ));
        rounds.push(json!({
            "round": r,
            "channels": names.len(),
            "events_accepted": outcome.accepted,
            "events_refused": outcome.refused,
            "publish_seconds": round(outcome.seconds),
            "expected_deliveries": expected,
            "received_deliveries": received,
            "lost": lost,
            "duplicates_or_extra": received.saturating_sub(expected),
            "seq_gaps": run.total("seq_gaps") - g0,
            "misrouted": run.total("misrouted") - m0,
            "out_of_order": run.total("out_of_order") - o0,
            "closed_during_round": run.total("closed") - closed_before,
            // From the publish to the last delivery (the latency's maximum).
            "deliveries_per_second": match last_ms {
                Some(ms) if ms > 0.0 => json!(round(received as f64 / (ms / 1000.0))),
                _ => Value::Null,
            },
            "seconds_to_last_delivery": last_ms.map(|ms| round(ms / 1000.0)),
            "wall_seconds": round(wall),
            "latency": latency,
            "server_cpu_pct": server_cpu.map(round),
            "harness_cpu_pct": round(harness_cpu),
        }));
        run.pump_for(Duration::from_secs(1));
    }
    run.stop();

    // What the run must show: every connection held through the hold, every broadcast
    // delivered to every one of them exactly once and in order.
    let mut reasons = Vec::new();
    if held < a.connections as u64 {
        reasons.push(format!("{held} of {} connections held", a.connections));
    }
    if closed_in_hold > 0 {
        reasons.push(format!("{closed_in_hold} connections closed during the hold"));
    }
    for r in &rounds {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let bad =
            n("lost") + n("duplicates_or_extra") + n("misrouted") + n("out_of_order") + n("events_refused");
        if bad > 0 {
            reasons.push(format!(
                "round {}: {} lost, {} extra, {} misrouted, {} out of order, {} events refused",
                r["round"],
                n("lost"),
                n("duplicates_or_extra"),
                n("misrouted"),
                n("out_of_order"),
                n("events_refused")
            ));
        }
    }
    let failures = run.failures();
    if !failures.is_empty() {
        reasons.push(format!("connection failures: {}", Value::Object(failures.clone())));
    }

    let mut f = serde_json::Map::new();
    f.insert("passed".into(), json!(reasons.is_empty()));
    f.insert("reasons".into(), json!(reasons));
    let kernel_per_socket = slab_growth.map(|g| g / 2.0);
    let best = rounds.iter().filter_map(|r| r["deliveries_per_second"].as_f64()).fold(0.0, f64::max);
    let p = rounds.last().map(|r| r["latency"].clone()).unwrap_or(Value::Null);
    f.insert(
        "headline".into(),
        json!(format!(
            "{held} connections held {} s ({} nodes); ramp {} connects/s; server {} B/connection; kernel {} B/socket; harness {} B/socket; broadcast to all: {} lost in {} rounds, up to {} deliveries/s, last round p50 {} ms p99 {} ms",
            a.hold,
            pids.len(),
            round(connected as f64 / ramp),
            per(growth, held),
            per(kernel_per_socket, held),
            per(harness_rss.map(|r| r as f64), held),
            lost_total,
            a.rounds,
            best.round(),
            p["p50_ms"],
            p["p99_ms"],
        )),
    );
    f.insert("connections_offered".into(), json!(a.connections));
    f.insert("connected".into(), json!(connected));
    f.insert("subscribed".into(), json!(subscribed));
    f.insert("subscribe_errors".into(), json!(run.total("subscribe_errors")));
    f.insert(
        "channels".into(),
        json!({"public": a.public_channels, "presence": presence_channels,
        "presence_connections": presence_conns, "largest_public": subs.iter().take(a.public_channels).max()}),
    );
    f.insert("ramp_seconds".into(), json!(round(ramp)));
    f.insert("connects_per_second".into(), json!(round(connected as f64 / ramp)));
    f.insert("peak_connects_per_second".into(), json!(round(peak_connects)));
    f.insert("handshake_latency".into(), percentiles(&run.handshake));
    f.insert("ramp_server_cpu_pct".into(), json!(ramp_server_cpu.map(round)));
    f.insert("ramp_harness_cpu_pct".into(), json!(round(ramp_harness_cpu)));
    f.insert("open_at_hold_start".into(), json!(open_at_hold));
    f.insert("held".into(), json!(held));
    f.insert("min_open_during_hold".into(), json!(min_open_in_hold));
    f.insert("closed_during_hold".into(), json!(closed_in_hold));
    f.insert("hold_seconds".into(), json!(a.hold));
    f.insert("pongs_during_hold".into(), json!(pongs));
    f.insert("hold_server_cpu_pct".into(), json!(hold_server_cpu.map(round)));
    f.insert("hold_harness_cpu_pct".into(), json!(round(hold_harness_cpu)));
    f.insert("server_rss_bytes".into(), json!(server_rss));
    f.insert("server_rss_per_connection".into(), per(growth, held));
    f.insert("nodes".into(), nodes);
    f.insert("kernel_slab_growth_bytes".into(), json!(slab_growth.map(|g| g.round())));
    f.insert("kernel_slab_per_socket".into(), per(kernel_per_socket, held));
    f.insert("harness_rss_bytes".into(), json!(harness_rss));
    f.insert("harness_rss_per_socket".into(), per(harness_rss.map(|r| r as f64), held));
    f.insert("mem_available_drop_bytes".into(), json!(avail_drop.map(|d| d.round())));
    f.insert("mem_available_drop_per_connection".into(), per(avail_drop, held));
    f.insert("tcp_buffers_held_bytes".into(), json!(procstat::tcp_buffer_bytes()));
    f.insert("rounds".into(), Value::Array(rounds));
    f.insert("lost".into(), json!(lost_total));
    f.insert("failures".into(), Value::Object(failures));
    f.insert("protocol_errors".into(), json!(run.total("protocol_errors")));
    f.insert(
        "note".into(),
        json!("kernel slab is machine-wide: on loopback each connection has a client and a server socket, so per socket = growth / 2 / held; MemAvailable's drop covers everything (server, both kernel sockets, harness) per connection"),
    );
    let params = json!({"connections": a.connections, "public_channels": a.public_channels,
        "presence_percent": a.presence_percent, "presence_size": a.presence_size, "rate": a.rate,
        "max_pending": a.max_pending, "hold": a.hold, "rounds": a.rounds, "round_timeout": a.round_timeout,
        "payload": a.payload, "batch": a.batch, "workers": workers});
    Ok(("broadcast", params, f, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_follow_the_layout() {
        let subs = subscribers(Layout::Mix { public: 2, presence_percent: 10 }, 1_000, 2 + 2);
        assert_eq!(subs, vec![450, 450, 50, 50]);
        assert_eq!(spread(&[1.0, 3.0]), json!({"min": 1.0, "mean": 2.0, "max": 3.0}));
    }
}
