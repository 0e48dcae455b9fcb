//! The coordinator: spawns worker processes, follows their samples, samples the server from
//! /proc, paces publishers, and collects everything a report needs.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::plan::{Plan, Target};
use crate::procstat;
use crate::report::Point;

/// Options every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub server: SocketAddr,
    /// Where the HTTP API publishers connect (another node, for cross-node runs).
    pub publish_server: SocketAddr,
    /// The server's processes (several: nodes sharing the port), summed in every figure.
    pub server_pids: Vec<u32>,
    pub target: Target,
    /// Subscribers offer permessage-deflate (and inflate what arrives compressed).
    pub deflate: bool,
    pub app_id: String,
    pub per_worker: usize,
    pub source_ips: Vec<Ipv4Addr>,
    pub out: PathBuf,
    pub charts_to: Option<PathBuf>,
    pub sample_ms: u64,
    pub label: String,
}

impl Common {
    /// The first server process (perf counts one process's send calls).
    pub fn server_pid(&self) -> Option<u32> {
        self.server_pids.first().copied()
    }

    /// The server's RSS, summed over its processes.
    pub fn server_rss(&self) -> Option<u64> {
        procstat::rss_sum(&self.server_pids)
    }

    /// The server's CPU ticks, summed over its processes.
    pub fn server_ticks(&self) -> Option<u64> {
        procstat::cpu_ticks_sum(&self.server_pids)
    }

    pub fn key_secret(&self) -> (String, String) {
        match &self.target {
            Target::Pusher { key, secret } => (key.clone(), secret.clone()),
            Target::Raw { .. } | Target::Plain { .. } => (String::new(), String::new()),
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    latest: Value,
    level: Option<usize>,
    done: bool,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// CPU counters at one moment.
pub struct CpuMark {
    at: Instant,
    server: Option<u64>,
    harness: u64,
}

/// A running set of workers.
pub struct Run {
    pub common: Common,
    workers: Vec<Worker>,
    rx: mpsc::Receiver<(usize, Value)>,
    started: Instant,
    pub timeline: Vec<Point>,
    pub handshake: Histogram<u64>,
    pub latency: Histogram<u64>,
    window_latency: Histogram<u64>,
    /// Latency of the current phase (reset by `phase_reset`).
    pub phase_latency: Histogram<u64>,
    /// The receive threads' read lag in the current phase (reset by `phase_reset`).
    pub phase_read_lag: Histogram<u64>,
    last_point: Instant,
    prev_connected: u64,
    prev_deliveries: u64,
    prev_published: u64,
    prev_server_ticks: Option<u64>,
    prev_harness_ticks: u64,
    pub published: Arc<AtomicU64>,
    pub publish_errors: Arc<AtomicU64>,
    /// Server RSS before the workers started.
    baseline_rss: Option<u64>,
}

impl Run {
    pub fn start(common: &Common, plans: Vec<Plan>) -> Run {
        let baseline_rss = common.server_rss();
        let (tx, rx) = mpsc::channel();
        let exe = std::env::current_exe().expect("own executable");
        let mut workers = Vec::new();
        for plan in plans {
            let index = plan.worker;
            let mut child = Command::new(&exe)
                .arg("__worker")
                .arg(serde_json::to_string(&plan).unwrap())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("worker starts");
            let stdout = child.stdout.take().unwrap();
            let stdin = child.stdin.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        let _ = tx.send((index, v));
                    }
                }
            });
            workers.push(Worker { child, stdin, latest: json!({}), level: None, done: false });
        }
        Run {
            common: common.clone(),
            workers,
            rx,
            started: Instant::now(),
            timeline: Vec::new(),
            handshake: hist(),
            latency: hist(),
            window_latency: hist(),
            phase_latency: hist(),
            phase_read_lag: hist(),
            last_point: Instant::now(),
            prev_connected: 0,
            prev_deliveries: 0,
            prev_published: 0,
            prev_server_ticks: None,
            prev_harness_ticks: 0,
            published: Arc::new(AtomicU64::new(0)),
            publish_errors: Arc::new(AtomicU64::new(0)),
            baseline_rss,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn absorb(&mut self, worker: usize, v: Value) {
        let w = &mut self.workers[worker];
        match v["type"].as_str() {
            Some("level") => w.level = v["index"].as_u64().map(|i| i as usize),
            Some(kind @ ("sample" | "done")) => {
                for (value, count) in pairs(&v["handshake_us"]) {
                    let _ = self.handshake.record_n(value, count);
                }
                for (value, count) in pairs(&v["latency_us"]) {
                    let _ = self.latency.record_n(value, count);
                    let _ = self.window_latency.record_n(value, count);
                    let _ = self.phase_latency.record_n(value, count);
                }
                for (value, count) in pairs(&v["read_lag_us"]) {
                    let _ = self.phase_read_lag.record_n(value, count);
                }
                w.done = kind == "done";
                w.latest = v;
            }
            _ => {}
        }
    }

    /// Processes worker output for `d`, adding a timeline point every second.
    pub fn pump_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.pump_once(until);
        }
    }

    fn pump_once(&mut self, until: Instant) {
        let next_point = self.last_point + Duration::from_secs(1);
        let wait = next_point.min(until).saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(wait) {
            Ok((w, v)) => self.absorb(w, v),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        if Instant::now() >= next_point {
            self.point();
        }
    }

    /// Waits until every worker has reached level `index` (or ended).
    pub fn wait_level(&mut self, index: usize, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.workers.iter().all(|w| w.done || w.level.is_some_and(|l| l >= index)) {
                return true;
            }
            self.pump_once(until);
        }
        false
    }

    pub fn command(&mut self, cmd: &str) {
        for w in &mut self.workers {
            let _ = writeln!(w.stdin, "{cmd}");
            let _ = w.stdin.flush();
        }
    }

    /// Stops every worker and waits for their final figures.
    pub fn stop(&mut self) {
        self.command("stop");
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && !self.workers.iter().all(|w| w.done) {
            self.pump_once(until);
        }
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
        self.point();
    }

    pub fn total(&self, field: &str) -> u64 {
        self.workers.iter().map(|w| w.latest[field].as_u64().unwrap_or(0)).sum()
    }

    /// Sum of a counter over some of the workers (by index).
    pub fn worker_totals(&self, range: std::ops::Range<usize>, field: &str) -> u64 {
        self.workers[range].iter().map(|w| w.latest[field].as_u64().unwrap_or(0)).sum()
    }

    pub fn failures(&self) -> serde_json::Map<String, Value> {
        let mut all = serde_json::Map::new();
        for w in &self.workers {
            if let Some(map) = w.latest["failures"].as_object() {
                for (k, v) in map {
                    let n = all.get(k).and_then(Value::as_u64).unwrap_or(0) + v.as_u64().unwrap_or(0);
                    all.insert(k.clone(), json!(n));
                }
            }
        }
        all
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// RSS of the coordinator and its workers.
    pub fn harness_rss(&self) -> Option<u64> {
        let own = procstat::rss_bytes(std::process::id());
        let workers = procstat::rss_sum(&self.worker_pids()).unwrap_or(0);
        own.map(|o| o + workers)
    }

    /// The server's RSS before the workers started, summed over its processes.
    pub fn baseline_rss(&self) -> Option<u64> {
        self.baseline_rss
    }

    pub fn phase_reset(&mut self) {
        self.phase_latency.reset();
        self.phase_read_lag.reset();
    }

    fn point(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_point).as_secs_f64().max(0.001);
        self.last_point = now;
        let connected = self.total("connected");
        let deliveries = self.total("deliveries");
        let published = self.published.load(Ordering::Relaxed);
        let server_ticks = self.common.server_ticks();
        let server_cpu = match (server_ticks, self.prev_server_ticks) {
            (Some(now), Some(prev)) => Some((now - prev) as f64 / procstat::TICKS_PER_SEC / dt * 100.0),
            _ => None,
        };
        let own = procstat::cpu_ticks(std::process::id()).unwrap_or(0);
        let harness_ticks: u64 =
            self.worker_pids().into_iter().filter_map(procstat::cpu_ticks).sum::<u64>() + own;
        let harness_cpu =
            harness_ticks.saturating_sub(self.prev_harness_ticks) as f64 / procstat::TICKS_PER_SEC / dt
                * 100.0;
        let (p50, p99) = if self.window_latency.is_empty() {
            (None, None)
        } else {
            (
                Some(self.window_latency.value_at_quantile(0.5) as f64 / 1000.0),
                Some(self.window_latency.value_at_quantile(0.99) as f64 / 1000.0),
            )
        };
        self.window_latency.reset();
        let failures = self.failures().values().filter_map(Value::as_u64).sum();
        let open = self.total("open");
        let server_rss = self.common.server_rss();
        let per_connection = |v: f64| (open > 0).then(|| v / open as f64);
        let rss_per_connection = match (server_rss, self.baseline_rss) {
            (Some(now), Some(base)) => per_connection(now as f64 - base as f64),
            _ => None,
        };
        self.timeline.push(Point {
            t: self.elapsed(),
            open,
            connects_per_s: connected.saturating_sub(self.prev_connected) as f64 / dt,
            failures,
            deliveries_per_s: deliveries.saturating_sub(self.prev_deliveries) as f64 / dt,
            published_per_s: published.saturating_sub(self.prev_published) as f64 / dt,
            p50_ms: p50,
            p99_ms: p99,
            server_rss,
            server_rss_per_connection: rss_per_connection,
            server_cpu_pct: server_cpu,
            server_cpu_us_per_connection: server_cpu.and_then(|pct| per_connection(pct * 10_000.0)),
            harness_cpu_pct: if self.prev_harness_ticks == 0 { 0.0 } else { harness_cpu },
            harness_rss: self.harness_rss(),
            slab: procstat::slab_bytes(),
            tcp_buffers: procstat::tcp_buffer_bytes(),
        });
        self.prev_connected = connected;
        self.prev_deliveries = deliveries;
        self.prev_published = published;
        self.prev_server_ticks = server_ticks;
        self.prev_harness_ticks = harness_ticks;
    }

    /// CPU time so far: (when, server ticks, harness ticks), for `cpu_since`.
    pub fn cpu_mark(&self) -> CpuMark {
        let server = self.common.server_ticks();
        let own = procstat::cpu_ticks(std::process::id()).unwrap_or(0);
        let harness = self.worker_pids().into_iter().filter_map(procstat::cpu_ticks).sum::<u64>() + own;
        CpuMark { at: Instant::now(), server, harness }
    }

    /// Average CPU (% of one core) of the server and of the harness since `mark`.
    pub fn cpu_since(&self, mark: &CpuMark) -> (Option<f64>, f64) {
        let now = self.cpu_mark();
        let secs = now.at.duration_since(mark.at).as_secs_f64().max(0.001);
        let pct = |a: u64, b: u64| a.saturating_sub(b) as f64 / procstat::TICKS_PER_SEC / secs * 100.0;
        let server = match (now.server, mark.server) {
            (Some(n), Some(m)) => Some(pct(n, m)),
            _ => None,
        };
        (server, pct(now.harness, mark.harness))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

fn pairs(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .map(|a| a.iter().filter_map(|p| Some((p[0].as_u64()?, p[1].as_u64()?))).collect())
        .unwrap_or_default()
}

pub fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    let ms = |q: f64| (h.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({"count": h.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0})
}

/// Splits `total` connections into worker plans of at most `per_worker` each.
pub fn split(
    common: &Common,
    total: usize,
    first_worker: usize,
    first_id: usize,
) -> Vec<(usize, usize, usize)> {
    let n = total.div_ceil(common.per_worker.max(1)).max(1);
    (0..n)
        .map(|i| {
            let share = total / n + usize::from(i < total % n);
            let before: usize = (0..i).map(|j| total / n + usize::from(j < total % n)).sum();
            (first_worker + i, share, first_id + before)
        })
        .collect()
}
