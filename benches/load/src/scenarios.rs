//! The scenarios: each builds worker plans, drives the run, and writes the report.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Scenario;
use crate::coord::{self, Common, Run, percentiles};
use crate::plan::{Behaviour, Layout, Plan, Target};
use crate::procstat;
use crate::publish::{self, Publishing, Spec, Via};
use crate::report;
use crate::sends;
use crate::sign;

const LEVEL_TIMEOUT: Duration = Duration::from_secs(300);

pub fn run(common: &Common, scenario: &Scenario) -> Result<String, String> {
    let (name, params, figures, run) = match scenario.clone() {
        Scenario::Connect { connections, rate, hold } => connect(common, connections, rate, hold)?,
        Scenario::Idle { steps, channels, settle, hold, rate } => {
            idle(common, steps, channels, settle, hold, rate)?
        }
        Scenario::Fanout {
            subscribers,
            channels,
            rate,
            duration,
            payload,
            publishers,
            batch,
            window,
            find_max,
            max_p99_ms,
            phase_secs,
            max_phases,
            refine,
            connect_rate,
            count_sends,
        } => fanout(
            common,
            FanoutArgs {
                subscribers,
                channels,
                rate,
                duration,
                payload,
                publishers,
                batch,
                window,
                find_max,
                max_p99_ms,
                phase_secs,
                max_phases,
                refine,
                connect_rate,
                count_sends: count_sends.parse()?,
            },
        )?,
        Scenario::Presence { connections, channels, conns_per_user, stay_ms, duration, connect_rate } => {
            presence(common, connections, channels, conns_per_user, stay_ms, duration, connect_rate)?
        }
        Scenario::Churn { steady, churners, channels, stay_ms, jitter_ms, rate, duration, connect_rate } => {
            churn(common, steady, churners, channels, stay_ms, jitter_ms, rate, duration, connect_rate)?
        }
        Scenario::Echo { connections, size, interval_ms, duration, rate } => {
            echo(common, connections, size, interval_ms, duration, rate)?
        }
        Scenario::Broadcast { args } => crate::broadcast::run(common, &args)?,
        Scenario::RecvBench { .. } => return Err("recv-bench runs without a server".into()),
    };
    write_report(common, name, params, figures, &run)
}

pub(crate) fn plans(
    common: &Common,
    total_levels: &[usize],
    behaviour: Behaviour,
    rate: f64,
    first_worker: usize,
    first_id: usize,
    conns_per_user: usize,
) -> Vec<Plan> {
    let total = *total_levels.last().unwrap_or(&0);
    let parts = coord::split(common, total, first_worker, first_id);
    let n = parts.len();
    parts
        .into_iter()
        .map(|(worker, share, first)| Plan {
            worker,
            server: common.server,
            source_ips: common.source_ips.clone(),
            target: common.target.clone(),
            deflate: common.deflate,
            // Each worker's share of each level, in proportion.
            levels: total_levels
                .iter()
                .map(|&l| if total == 0 { 0 } else { (l as u128 * share as u128 / total as u128) as usize })
                .collect(),
            rate: rate / n as f64,
            behaviour: behaviour.clone(),
            sample_ms: common.sample_ms,
            first_id: first,
            conns_per_user,
            layout: Layout::Cycle,
            max_pending: 0,
        })
        .collect()
}

pub(crate) fn channel_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

pub(crate) type Outcome = (&'static str, Value, serde_json::Map<String, Value>, Run);

fn connect(common: &Common, connections: usize, rate: f64, hold: f64) -> Result<Outcome, String> {
    let plans = plans(common, &[connections], Behaviour::Idle { channels: vec![] }, rate, 0, 0, 1);
    let mut run = Run::start(common, plans);
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("workers did not reach the target in time".into());
    }
    let ramp = run.elapsed() - t0;
    let (server_cpu, harness_cpu) = run.cpu_since(&mark);
    run.command("next");
    run.pump_for(Duration::from_secs_f64(hold));
    let open_at_end = run.total("open");
    run.stop();
    let connected = run.total("connected");
    let mut f = serde_json::Map::new();
    f.insert("connected".into(), json!(connected));
    f.insert("open_at_end_of_hold".into(), json!(open_at_end));
    f.insert("ramp_seconds".into(), json!(round(ramp)));
    f.insert("connects_per_second".into(), json!(round(connected as f64 / ramp.max(0.001))));
    f.insert("handshake_latency".into(), percentiles(&run.handshake));
    f.insert("failures".into(), Value::Object(run.failures()));
    f.insert("server_cpu_pct_during_ramp".into(), json!(server_cpu.map(round)));
    f.insert("harness_cpu_pct_during_ramp".into(), json!(round(harness_cpu)));
    Ok(("connect", json!({"connections": connections, "rate": rate, "hold": hold}), f, run))
}

fn idle(
    common: &Common,
    steps: Vec<usize>,
    channels: usize,
    settle: f64,
    hold: f64,
    rate: f64,
) -> Result<Outcome, String> {
    let mut steps = steps;
    steps.sort_unstable();
    let names = match common.target {
        Target::Pusher { .. } | Target::Plain { .. } => channel_names("idle-", channels),
        Target::Raw { .. } => vec![],
    };
    let rss0 = common.server_rss();
    let slab0 = procstat::slab_bytes();
    let plans = plans(common, &steps, Behaviour::Idle { channels: names.clone() }, rate, 0, 0, 1);
    let mut run = Run::start(common, plans);
    let mut levels = Vec::new();
    for (i, &step) in steps.iter().enumerate() {
        if !run.wait_level(i, LEVEL_TIMEOUT) {
            return Err(format!("workers did not reach step {step} in time"));
        }
        run.pump_for(Duration::from_secs_f64(settle));
        let open = run.total("open");
        let rss = common.server_rss();
        let slab = procstat::slab_bytes();
        let per = |now: Option<u64>, base: Option<u64>| match (now, base) {
            (Some(n), Some(b)) if open > 0 => Some((n as f64 - b as f64) / open as f64),
            _ => None,
        };
        let slab_both = per(slab, slab0);
        levels.push(json!({
            "target": step,
            "open": open,
            "subscribed": run.total("subscribed"),
            "server_rss": rss,
            "server_rss_per_connection": per(rss, rss0).map(|v| v.round()),
            "kernel_slab_per_connection_both_ends": slab_both.map(|v| v.round()),
            "kernel_slab_per_socket": slab_both.map(|v| (v / 2.0).round()),
        }));
        run.command("next");
    }
    run.pump_for(Duration::from_secs_f64(hold));
    run.stop();
    let mut f = serde_json::Map::new();
    f.insert("server_rss_baseline".into(), json!(rss0));
    f.insert("levels".into(), Value::Array(levels));
    f.insert("pongs_sent".into(), json!(run.total("pongs_sent")));
    f.insert("subscribe_errors".into(), json!(run.total("subscribe_errors")));
    f.insert("failures".into(), Value::Object(run.failures()));
    f.insert("note".into(), json!("kernel slab is measured machine-wide: on loopback each connection has a client and a server socket, so per socket = both ends / 2"));
    Ok(("idle", json!({"steps": steps, "channels": channels, "settle": settle, "hold": hold}), f, run))
}

pub struct FanoutArgs {
    pub subscribers: usize,
    pub channels: usize,
    pub rate: f64,
    pub duration: f64,
    pub payload: usize,
    pub publishers: usize,
    pub batch: usize,
    pub window: usize,
    pub find_max: bool,
    pub max_p99_ms: f64,
    pub phase_secs: f64,
    pub max_phases: usize,
    pub refine: usize,
    pub connect_rate: f64,
    pub count_sends: sends::Mode,
}

/// Publishers for the target: the HTTP API for Pusher servers, WebSockets for plain ones.
fn start_publishing(
    common: &Common,
    run: &Run,
    channels: &[String],
    publishers: usize,
    payload: usize,
    batch: usize,
    window: usize,
) -> Result<Publishing, String> {
    let via = match &common.target {
        Target::Pusher { key, secret } => Via::Http {
            server: common.publish_server,
            app_id: common.app_id.clone(),
            key: key.clone(),
            secret: secret.clone(),
            batch,
            window,
        },
        Target::Plain { pub_path, .. } => {
            Via::WebSocket { server: common.publish_server, pub_path: pub_path.clone() }
        }
        Target::Raw { .. } => {
            return Err("publishing needs --protocol pusher or plain (a broadcast server), not raw".into());
        }
    };
    let spec = Spec { via, channels: channels.to_vec(), publishers, payload };
    let counters = publish::Counters { published: run.published.clone(), errors: run.publish_errors.clone() };
    Ok(Publishing::start(spec, &counters))
}

/// Subscribers per channel when connection `i` (of `total`) subscribes to `channels[i % n]`.
fn subscribers_per_channel(total: usize, n: usize) -> Vec<u64> {
    (0..n).map(|c| (total / n + usize::from(c < total % n)) as u64).collect()
}

fn expected_deliveries(published: &[u64], subs: &[u64]) -> u64 {
    published.iter().zip(subs).map(|(p, s)| p * s).sum()
}

/// Counters summed over the workers at one moment, for a phase's differences.
struct Totals {
    deliveries: u64,
    reads: u64,
    seq_gaps: u64,
    out_of_order: u64,
    misrouted: u64,
    receive_cpu_us: u64,
}

impl Totals {
    fn of(run: &Run) -> Totals {
        Totals {
            deliveries: run.total("deliveries"),
            reads: run.total("reads"),
            seq_gaps: run.total("seq_gaps"),
            out_of_order: run.total("out_of_order"),
            misrouted: run.total("misrouted"),
            receive_cpu_us: run.total("receive_thread_cpu_us"),
        }
    }
}

/// One fan-out phase at `rate` events/s: its figures and whether it passed
/// ([`PhaseCounts::passed`]).
fn fanout_phase(
    common: &Common,
    run: &mut Run,
    publishing: &Publishing,
    subs: &[u64],
    a: &FanoutArgs,
    rate: f64,
) -> (Value, bool) {
    let before_pub = publishing.published_per_channel();
    let before = Totals::of(run);
    let errors0 = run.publish_errors.load(Ordering::Relaxed);
    run.phase_reset();
    let window = sends::begin(a.count_sends, common.server, common.server_pid(), &common.out);
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    publishing.rate.store(rate.round() as u64, Ordering::Relaxed);
    let secs = if a.find_max { a.phase_secs } else { a.duration };
    run.pump_for(Duration::from_secs_f64(secs));
    publishing.rate.store(0, Ordering::Relaxed);
    let t1 = run.elapsed();
    let (server_cpu, harness_cpu) = run.cpu_since(&mark);
    // Let in-flight events arrive before counting.
    run.pump_for(Duration::from_secs(2));
    let after_pub = publishing.published_per_channel();
    let published: Vec<u64> = after_pub.iter().zip(&before_pub).map(|(a, b)| a - b).collect();
    let expected = expected_deliveries(&published, subs);
    let in_time = run.total("deliveries") - before.deliveries;
    // A server (or harness) that fell behind delivers the backlog late: wait until deliveries
    // stop (at most 30 s) so the next phase starts clean, and tell late from lost.
    if in_time < expected {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = run.total("deliveries");
        while std::time::Instant::now() < until && last - before.deliveries < expected {
            run.pump_for(Duration::from_secs(1));
            let now = run.total("deliveries");
            if now == last {
                break;
            }
            last = now;
        }
    }
    let sent = window.end();
    let after = Totals::of(run);
    let received = after.deliveries - before.deliveries;
    let publish_secs = (t1 - t0).max(0.001);
    let achieved = published.iter().sum::<u64>() as f64 / publish_secs;
    let p99 = if run.phase_latency.is_empty() {
        0.0
    } else {
        run.phase_latency.value_at_quantile(0.99) as f64 / 1000.0
    };
    let reads = after.reads - before.reads;
    let misrouted = after.misrouted - before.misrouted;
    let out_of_order = after.out_of_order - before.out_of_order;
    let send_calls = sent["send_calls"].as_u64().filter(|&n| n > 0);
    let mut sends = sent;
    if let Some(n) = send_calls {
        sends["deliveries_per_send"] = json!(round(received as f64 / n as f64));
        // corecast's own count of WebSocket frames written, when /metrics has it.
        if let Some(frames) = sends["frames_written"].as_u64() {
            sends["frames_per_send"] = json!(round(frames as f64 / n as f64));
        }
    }
    let publish_errors = run.publish_errors.load(Ordering::Relaxed) - errors0;
    let gaps = after.seq_gaps - before.seq_gaps;
    let phase = json!({
        "target_events_per_second": rate.round(),
        "achieved_events_per_second": round(achieved),
        "published": published.iter().sum::<u64>(),
        "publish_errors": publish_errors,
        "publish_seconds": round(t1 - t0),
        "expected_deliveries": expected,
        "received_deliveries": received,
        // Counted more than 2 s after publishing stopped.
        "late_deliveries": received.saturating_sub(in_time),
        "lost": expected.saturating_sub(received),
        "duplicates_or_extra": received.saturating_sub(expected),
        "seq_gaps": gaps,
        "out_of_order": out_of_order,
        "misrouted": misrouted,
        "deliveries_per_second": round(in_time.min(expected) as f64 / publish_secs),
        "latency": percentiles(&run.phase_latency),
        // Per read, how long after the kernel had the data the harness read it: latency
        // measures the server only while this stays small.
        "harness_read_lag": percentiles(&run.phase_read_lag),
        "server_sends": sends,
        "server_cpu_pct": server_cpu.map(round),
        "harness_cpu_pct": round(harness_cpu),
        // The receive threads' CPU over publishing and draining.
        "harness_receive_cpu_pct": round((after.receive_cpu_us - before.receive_cpu_us) as f64 / 1e4 / (run.elapsed() - t0).max(0.001)),
        "frames_per_read": if reads > 0 { json!(round(received as f64 / reads as f64)) } else { Value::Null },
    });
    let counts = PhaseCounts {
        expected,
        received,
        misrouted,
        out_of_order,
        publish_errors,
        seq_gaps: gaps,
        p99_ms: p99,
        target_rate: rate,
        achieved_rate: achieved,
    };
    (phase, counts.passed(a.max_p99_ms))
}

/// What decides whether a fan-out phase passed.
#[derive(Debug, Clone, Copy)]
struct PhaseCounts {
    expected: u64,
    received: u64,
    misrouted: u64,
    out_of_order: u64,
    publish_errors: u64,
    seq_gaps: u64,
    p99_ms: f64,
    /// Events per second offered and achieved.
    target_rate: f64,
    achieved_rate: f64,
}

impl PhaseCounts {
    /// Every delivery exactly once, none misrouted or reordered, no publish refused, no sequence
    /// gap, p99 within `max_p99_ms` and at least 90 % of the offered rate achieved.
    ///
    /// Lateness fails a phase through p99; `late_deliveries` only explains it (worker samples
    /// are up to --sample-ms old, so a few in-time deliveries may count as late). A refused
    /// publish (the server pushing back) shows as sequence gaps and fails the phase too.
    fn passed(&self, max_p99_ms: f64) -> bool {
        let keeping_up = self.achieved_rate >= 0.9 * self.target_rate;
        self.received == self.expected
            && self.misrouted == 0
            && self.out_of_order == 0
            && self.publish_errors == 0
            && self.seq_gaps == 0
            && self.p99_ms <= max_p99_ms
            && keeping_up
    }
}

/// One line with the figures a comparison table needs.
fn headline(p: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x}"));
    format!(
        "{} deliveries/s ({} events/s), p50 {} ms, p99 {} ms, {} deliveries per send ({}), server CPU {} %, harness CPU {} % (receive {} %), harness read lag p99 {} ms",
        f(&p["deliveries_per_second"]),
        f(&p["achieved_events_per_second"]),
        f(&p["latency"]["p50_ms"]),
        f(&p["latency"]["p99_ms"]),
        f(&p["server_sends"]["deliveries_per_send"]),
        p["server_sends"]["source"].as_str().unwrap_or("not counted"),
        f(&p["server_cpu_pct"]),
        f(&p["harness_cpu_pct"]),
        f(&p["harness_receive_cpu_pct"]),
        f(&p["harness_read_lag"]["p99_ms"]),
    )
}

fn fanout(common: &Common, a: FanoutArgs) -> Result<Outcome, String> {
    if matches!(common.target, Target::Raw { .. }) {
        return Err("fanout needs --protocol pusher or plain (a broadcast server), not raw".into());
    }
    let names = channel_names("fanout-", a.channels.max(1));
    let publishers = a.publishers.clamp(1, 255);
    let plans = plans(
        common,
        &[a.subscribers],
        Behaviour::Subscribe { channels: names.clone(), publishers },
        a.connect_rate,
        0,
        0,
        1,
    );
    let subs = subscribers_per_channel(a.subscribers, names.len());
    let mut run = Run::start(common, plans);
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("subscribers did not connect in time".into());
    }
    run.command("next");
    // Wait for subscriptions to be confirmed before publishing.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while run.total("subscribed") < a.subscribers as u64 && std::time::Instant::now() < until {
        run.pump_for(Duration::from_millis(200));
    }
    let subscribed = run.total("subscribed");
    let publishing = start_publishing(common, &run, &names, publishers, a.payload, a.batch, a.window)?;
    let mut phases = Vec::new();
    let mut rate = a.rate.max(1.0);
    let mut best: Option<(f64, Value)> = None;
    let mut failed_at: Option<f64> = None;
    let mut refined = 0;
    loop {
        let (phase, good) = fanout_phase(common, &mut run, &publishing, &subs, &a, rate);
        phases.push(phase.clone());
        if !a.find_max {
            break;
        }
        if good {
            best = Some((rate, phase));
        } else {
            failed_at = Some(failed_at.map_or(rate, |b| b.min(rate)));
        }
        if phases.len() >= a.max_phases {
            break;
        }
        rate = match (failed_at, &best) {
            // Still rising: ×1.5, and at least one event per second more.
            (None, _) => (rate * 1.5).ceil().max(rate + 1.0),
            // Started above the server's maximum: halve until a phase passes.
            (Some(_), None) => {
                let down = (rate / 2.0).floor();
                if down < 1.0 {
                    break;
                }
                down
            }
            // Then halve the interval between the best rate and the lowest failing one.
            (Some(bad), Some((good_rate, _))) if refined < a.refine => {
                refined += 1;
                let mid = ((good_rate + bad) / 2.0).round();
                if mid <= *good_rate || mid >= bad {
                    break;
                }
                mid
            }
            _ => break,
        };
        if rate > 5_000_000.0 {
            break;
        }
    }
    publishing.finish();
    run.stop();
    let mut f = serde_json::Map::new();
    f.insert("subscribed".into(), json!(subscribed));
    f.insert("phases".into(), Value::Array(phases.clone()));
    if a.find_max {
        let best = best.map(|(_, p)| p);
        if let Some(p) = &best {
            f.insert("headline".into(), json!(format!("sustained max: {}", headline(p))));
        }
        f.insert("sustained_max".into(), best.unwrap_or(Value::Null));
    } else if let Some(p) = phases.first() {
        f.insert("headline".into(), json!(headline(p)));
    }
    f.insert("overall_latency".into(), percentiles(&run.latency));
    f.insert("publish_errors".into(), json!(run.publish_errors.load(Ordering::Relaxed)));
    f.insert("protocol_errors".into(), json!(run.total("protocol_errors")));
    f.insert("failures".into(), Value::Object(run.failures()));
    let params = json!({"subscribers": a.subscribers, "channels": a.channels, "rate": a.rate, "duration": a.duration,
        "payload": a.payload, "publishers": publishers, "batch": a.batch, "window": a.window,
        "find_max": a.find_max, "max_p99_ms": a.max_p99_ms, "phase_secs": a.phase_secs,
        "protocol": match common.target { Target::Pusher { .. } => "pusher", Target::Plain { .. } => "plain", Target::Raw { .. } => "raw" }});
    Ok(("fanout", params, f, run))
}

/// A signed GET on the HTTP API, parsed as JSON.
fn api_get(common: &Common, path: &str, extra: &[(&str, &str)]) -> Result<Value, String> {
    use std::io::{Read, Write};
    let (key, secret) = common.key_secret();
    let target = sign::signed_path("GET", path, &key, &secret, b"", extra);
    let mut s = std::net::TcpStream::connect(common.server).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", common.server)
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).map_err(|e| format!("GET {path}: {e}: {resp}"))
}

fn user_counts(common: &Common, names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|n| {
            let path = format!("/apps/{}/channels/{n}", common.app_id);
            match api_get(common, &path, &[("info", "user_count")]) {
                Ok(v) => v["user_count"].clone(),
                Err(e) => json!(format!("error: {e}")),
            }
        })
        .collect()
}

fn presence(
    common: &Common,
    connections: usize,
    channels: usize,
    conns_per_user: usize,
    stay_ms: u64,
    duration: f64,
    connect_rate: f64,
) -> Result<Outcome, String> {
    let names = channel_names("presence-bench-", channels.max(1));
    let users = connections.div_ceil(conns_per_user.max(1));
    let expected_users: Vec<u64> = subscribers_per_channel(users, names.len());
    // Phase 1: everyone joins and stays; the member counts must match.
    let plans1 = plans(
        common,
        &[connections],
        Behaviour::Idle { channels: names.clone() },
        connect_rate,
        0,
        0,
        conns_per_user,
    );
    let mut run = Run::start(common, plans1);
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("connections did not join in time".into());
    }
    run.command("next");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while run.total("subscribed") < connections as u64 && std::time::Instant::now() < until {
        run.pump_for(Duration::from_millis(200));
    }
    run.pump_for(Duration::from_secs(1));
    let counted = user_counts(common, &names);
    let counts_match = counted.iter().zip(&expected_users).all(|(c, e)| c.as_u64() == Some(*e));
    run.stop();
    let member_events_join = run.total("member_added");
    drop(run);
    // Phase 2: the storm.
    let plans2 = plans(
        common,
        &[connections],
        Behaviour::Presence { channels: names.clone(), stay_ms },
        connect_rate,
        0,
        0,
        conns_per_user,
    );
    let mut run = Run::start(common, plans2);
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("storm connections did not connect in time".into());
    }
    run.command("next");
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    let (j0, l0, a0, r0) =
        (run.total("joins"), run.total("leaves"), run.total("member_added"), run.total("member_removed"));
    run.pump_for(Duration::from_secs_f64(duration));
    let t1 = run.elapsed();
    let (j1, l1, a1, r1) =
        (run.total("joins"), run.total("leaves"), run.total("member_added"), run.total("member_removed"));
    let (server_cpu, harness_cpu) = run.cpu_since(&mark);
    run.stop();
    std::thread::sleep(Duration::from_secs(1));
    // Everyone left: every presence channel must be empty.
    let after = user_counts(common, &names);
    let empty_after = after.iter().all(|c| c.as_u64() == Some(0) || c.is_null());
    let secs = (t1 - t0).max(0.001);
    let mut f = serde_json::Map::new();
    f.insert("users".into(), json!(users));
    f.insert("expected_user_counts".into(), json!(expected_users));
    f.insert("reported_user_counts".into(), Value::Array(counted));
    f.insert("user_counts_match".into(), json!(counts_match));
    f.insert("member_added_seen_while_joining".into(), json!(member_events_join));
    f.insert("joins_per_second".into(), json!(round((j1 - j0) as f64 / secs)));
    f.insert("leaves_per_second".into(), json!(round((l1 - l0) as f64 / secs)));
    f.insert("member_events_received_per_second".into(), json!(round(((a1 - a0) + (r1 - r0)) as f64 / secs)));
    f.insert("user_counts_after_everyone_left".into(), Value::Array(after));
    f.insert("empty_after".into(), json!(empty_after));
    f.insert("server_cpu_pct".into(), json!(server_cpu.map(round)));
    f.insert("harness_cpu_pct".into(), json!(round(harness_cpu)));
    f.insert("failures".into(), Value::Object(run.failures()));
    let params = json!({"connections": connections, "channels": channels, "conns_per_user": conns_per_user, "stay_ms": stay_ms, "duration": duration});
    Ok(("presence", params, f, run))
}

#[allow(clippy::too_many_arguments)]
fn churn(
    common: &Common,
    steady: usize,
    churners: usize,
    channels: usize,
    stay_ms: u64,
    jitter_ms: u64,
    rate: f64,
    duration: f64,
    connect_rate: f64,
) -> Result<Outcome, String> {
    let names = channel_names("churn-", channels.max(1));
    let steady_plans = plans(
        common,
        &[steady],
        Behaviour::Subscribe { channels: names.clone(), publishers: 1 },
        connect_rate,
        0,
        0,
        1,
    );
    let steady_workers = steady_plans.len();
    let churn_plans = plans(
        common,
        &[churners],
        Behaviour::Churn { channels: names.clone(), stay_ms, jitter_ms },
        connect_rate,
        steady_workers,
        steady,
        1,
    );
    let mut all = steady_plans;
    all.extend(churn_plans);
    let subs = subscribers_per_channel(steady, names.len());
    let mut run = Run::start(common, all);
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("connections did not open in time".into());
    }
    run.command("next");
    let publishing = start_publishing(common, &run, &names, 1, 64, 1, 8)?;
    let steady_deliveries = |run: &Run| -> u64 { run.worker_totals(0..steady_workers, "deliveries") };
    let before = steady_deliveries(&run);
    let (c0, d0) = (run.total("connected"), run.total("closed"));
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    publishing.rate.store(rate.round() as u64, Ordering::Relaxed);
    run.pump_for(Duration::from_secs_f64(duration));
    publishing.rate.store(0, Ordering::Relaxed);
    let t1 = run.elapsed();
    let (server_cpu, harness_cpu) = run.cpu_since(&mark);
    run.pump_for(Duration::from_secs(2));
    let (c1, d1) = (run.total("connected"), run.total("closed"));
    let published = publishing.published_per_channel();
    let expected = expected_deliveries(&published, &subs);
    let received = steady_deliveries(&run) - before;
    publishing.finish();
    run.stop();
    let secs = (t1 - t0).max(0.001);
    let mut f = serde_json::Map::new();
    f.insert("connects_per_second".into(), json!(round((c1 - c0) as f64 / secs)));
    f.insert("disconnects_per_second".into(), json!(round((d1 - d0) as f64 / secs)));
    f.insert("published".into(), json!(published.iter().sum::<u64>()));
    f.insert("steady_expected_deliveries".into(), json!(expected));
    f.insert("steady_received_deliveries".into(), json!(received));
    f.insert("steady_lost".into(), json!(expected.saturating_sub(received)));
    f.insert("latency".into(), percentiles(&run.latency));
    f.insert("server_cpu_pct".into(), json!(server_cpu.map(round)));
    f.insert("harness_cpu_pct".into(), json!(round(harness_cpu)));
    f.insert("failures".into(), Value::Object(run.failures()));
    let params = json!({"steady": steady, "churners": churners, "channels": channels, "stay_ms": stay_ms, "jitter_ms": jitter_ms, "rate": rate, "duration": duration});
    Ok(("churn", params, f, run))
}

fn echo(
    common: &Common,
    connections: usize,
    size: usize,
    interval_ms: u64,
    duration: f64,
    rate: f64,
) -> Result<Outcome, String> {
    let plans = plans(common, &[connections], Behaviour::Echo { size, interval_ms }, rate, 0, 0, 1);
    let mut run = Run::start(common, plans);
    if !run.wait_level(0, LEVEL_TIMEOUT) {
        return Err("connections did not open in time".into());
    }
    run.command("next");
    run.pump_for(Duration::from_secs(1));
    run.phase_reset();
    let before = run.total("deliveries");
    let t0 = run.elapsed();
    let mark = run.cpu_mark();
    run.pump_for(Duration::from_secs_f64(duration));
    let t1 = run.elapsed();
    let trips = run.total("deliveries") - before;
    let (server_cpu, harness_cpu) = run.cpu_since(&mark);
    let latency = percentiles(&run.phase_latency);
    run.stop();
    let mut f = serde_json::Map::new();
    f.insert("round_trips".into(), json!(trips));
    f.insert("round_trips_per_second".into(), json!(round(trips as f64 / (t1 - t0).max(0.001))));
    f.insert("latency".into(), latency);
    f.insert("server_cpu_pct".into(), json!(server_cpu.map(round)));
    f.insert("harness_cpu_pct".into(), json!(round(harness_cpu)));
    f.insert("failures".into(), Value::Object(run.failures()));
    Ok((
        "echo",
        json!({"connections": connections, "size": size, "interval_ms": interval_ms, "duration": duration}),
        f,
        run,
    ))
}

pub(crate) fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn write_report(
    common: &Common,
    name: &str,
    params: Value,
    figures: serde_json::Map<String, Value>,
    run: &Run,
) -> Result<String, String> {
    let charts = report::write_charts(&common.out, &format!("{} {name}", common.label), &run.timeline)?;
    let doc = json!({
        "scenario": name,
        "label": common.label,
        "server": common.server.to_string(),
        "server_pid": common.server_pid(),
        "server_pids": common.server_pids,
        "params": params,
        "figures": figures,
        "charts": charts,
        "timeline": run.timeline,
        "date": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    });
    let json_path = common.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| e.to_string())?;
    let mut summary =
        format!("{} — {name} against {} ({})\n", common.label, common.server, common.out.display());
    summary.push_str(&format!("params: {params}\n"));
    for (k, v) in &figures {
        summary.push_str(&format!("  {k}: {v}\n"));
    }
    summary.push_str(&format!("charts: {}\nreport: {}\n", charts.join(", "), json_path.display()));
    std::fs::write(common.out.join("summary.txt"), &summary).map_err(|e| e.to_string())?;
    if let Some(dest) = &common.charts_to {
        report::copy_charts(&common.out, dest)?;
        summary.push_str(&format!("charts copied to {}\n", dest.display()));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean phase: 1,000 events/s offered and achieved, every delivery in time.
    fn clean() -> PhaseCounts {
        PhaseCounts {
            expected: 10_000,
            received: 10_000,
            misrouted: 0,
            out_of_order: 0,
            publish_errors: 0,
            seq_gaps: 0,
            p99_ms: 20.0,
            target_rate: 1_000.0,
            achieved_rate: 1_000.0,
        }
    }

    #[test]
    fn clean_phase_passes() {
        assert!(clean().passed(100.0));
    }

    #[test]
    fn refused_publish_fails_phase_without_loss() {
        let c = PhaseCounts { publish_errors: 1, ..clean() };
        assert!(!c.passed(100.0));
    }

    #[test]
    fn seq_gap_fails_phase_without_loss() {
        let c = PhaseCounts { seq_gaps: 1, ..clean() };
        assert!(!c.passed(100.0));
    }

    #[test]
    fn lost_or_extra_deliveries_fail_phase() {
        assert!(!PhaseCounts { received: 9_999, ..clean() }.passed(100.0));
        assert!(!PhaseCounts { received: 10_001, ..clean() }.passed(100.0));
    }

    #[test]
    fn misrouted_or_reordered_event_fails_phase() {
        assert!(!PhaseCounts { misrouted: 1, ..clean() }.passed(100.0));
        assert!(!PhaseCounts { out_of_order: 1, ..clean() }.passed(100.0));
    }

    #[test]
    fn p99_over_limit_fails_phase_and_at_limit_passes() {
        assert!(!PhaseCounts { p99_ms: 100.1, ..clean() }.passed(100.0));
        assert!(PhaseCounts { p99_ms: 100.0, ..clean() }.passed(100.0));
    }

    #[test]
    fn phase_below_ninety_percent_of_offered_rate_fails() {
        assert!(!PhaseCounts { achieved_rate: 899.0, ..clean() }.passed(100.0));
        assert!(PhaseCounts { achieved_rate: 900.0, ..clean() }.passed(100.0));
    }
}
