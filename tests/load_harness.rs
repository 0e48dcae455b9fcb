//! The load harness (benches/load, `corecast-load`) runs every scenario at a tiny size against
//! the real server — and, for `--protocol plain`, against the uWebSockets.js broadcast server
//! (benches/uws/broadcast.js) — and produces its summary, JSON report and charts with
//! consistent counts. No timing assertions: figures are checked for consistency, not speed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `cargo test --workspace` (what scripts/test runs) builds the harness next to this test.
fn harness() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("corecast-load");
    assert!(path.exists(), "{} is missing: run `cargo test --workspace` (scripts/test does)", path.display());
    path
}

/// benches/uws/broadcast.js on uWebSockets.js from .testenv (scripts/test-deps.sh installs it).
struct Uws {
    child: Child,
    port: u16,
}

impl Uws {
    fn start() -> Uws {
        let modules = testenv().join("uws/node_modules");
        assert!(
            modules.join("@trufflesuite/uws-js-unofficial/package.json").exists(),
            "uWebSockets.js is missing from {}: run scripts/test-deps.sh (scripts/test does)",
            modules.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/uws/broadcast.js");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env("NODE_PATH", &modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/test-deps.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("listening on ").and_then(|a| a.rsplit(':').next()) {
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(20)).expect("broadcast.js did not start listening");
        Uws { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Uws {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(server: &Server, global: &[&str], scenario: &[&str]) -> Value {
    run_against(&server.addr(), server.child.id(), global, scenario)
}

fn run_against(addr: &str, pid: u32, global: &[&str], scenario: &[&str]) -> Value {
    // One directory per test (tests run in parallel, and two may run the same scenario).
    let test = std::thread::current().name().unwrap_or("test").replace("::", "-");
    let out = std::env::temp_dir().join(format!("corecast-harness-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let result = Command::new(harness())
        .args(["--server", addr, "--label", "corecast", "--out", out.to_str().unwrap(), "--sample-ms", "200"])
        .args(global)
        .args(scenario)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{scenario:?}: {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let summary = std::fs::read_to_string(out.join("summary.txt")).expect("summary.txt");
    assert!(summary.contains(scenario[0]), "{summary}");
    for chart in [
        "connections.svg",
        "throughput.svg",
        "latency.svg",
        "server_rss.svg",
        "per_connection.svg",
        "kernel_memory.svg",
        "cpu.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart} missing or broken");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["scenario"], scenario[0]);
    assert!(!report["timeline"].as_array().unwrap().is_empty(), "a timeline");
    let point = &report["timeline"][0];
    assert!(point["slab"].is_number() && point["tcp_buffers"].is_number(), "kernel memory: {point}");
    assert_eq!(report["server_pid"], pid, "the server process was sampled");
    let _ = std::fs::remove_dir_all(&out);
    report["figures"].clone()
}

fn no_failures(f: &Value) {
    assert_eq!(f["failures"], serde_json::json!({}), "{f}");
}

#[test]
fn connect() {
    let server = Server::start(&[]);
    let f = run(
        &server,
        &["--per-worker", "150"],
        &["connect", "--connections", "300", "--rate", "2000", "--hold", "0.5"],
    );
    no_failures(&f);
    assert_eq!(f["connected"], 300);
    assert_eq!(f["open_at_end_of_hold"], 300);
    assert_eq!(f["handshake_latency"]["count"], 300);
}

#[test]
fn idle() {
    let server = Server::start(&[]);
    let f = run(&server, &[], &["idle", "--steps", "100,300", "--settle", "1.2", "--channels", "3"]);
    no_failures(&f);
    let levels = f["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (level, want) in levels.iter().zip([100, 300]) {
        assert_eq!(level["open"], want);
        assert_eq!(level["subscribed"], want);
        assert!(level["server_rss_per_connection"].is_number());
    }
}

#[test]
fn fanout() {
    let server = Server::start(&["--cores", "2"]);
    let f = run(
        &server,
        &["--per-worker", "100"],
        &["fanout", "--subscribers", "200", "--channels", "4", "--rate", "20", "--duration", "1"],
    );
    no_failures(&f);
    assert_eq!(f["subscribed"], 200);
    let phase = &f["phases"][0];
    let published = phase["published"].as_u64().unwrap();
    assert!(published > 0);
    assert_eq!(phase["expected_deliveries"], phase["received_deliveries"]);
    assert_eq!(phase["lost"], 0);
    assert_eq!(phase["expected_deliveries"].as_u64().unwrap(), published * 50, "4 channels × 50 subscribers");
    in_order_and_routed(phase);
    read_lag_reported(phase);
}

/// The receive threads reported their read lag. A read comes after its data arrived
/// and the data after it was published, so no read's lag exceeds the largest latency: a lag
/// taken in another clock, or not taken, fails here.
fn read_lag_reported(phase: &Value) {
    let lag = &phase["harness_read_lag"];
    assert!(lag["count"].as_u64().unwrap_or(0) > 0, "no read lag recorded: {phase}");
    let (lag_max, latency_max) =
        (lag["max_ms"].as_f64().unwrap(), phase["latency"]["max_ms"].as_f64().unwrap());
    // Both histograms keep 3 significant digits.
    assert!(
        lag_max <= latency_max * 1.01,
        "read lag {lag_max} ms above the largest latency {latency_max} ms"
    );
}

/// `--deflate` against a compressing server: every delivery arrives compressed and is counted,
/// in order, by the receive loop that inflates each distinct message once.
#[test]
fn fanout_with_deflate_counts_compressed_deliveries() {
    let server = Server::start(&["--cores", "2", "--permessage-deflate"]);
    let f = run(
        &server,
        &["--per-worker", "100", "--deflate"],
        &["fanout", "--subscribers", "200", "--channels", "2", "--rate", "20", "--duration", "1"],
    );
    no_failures(&f);
    let phase = &f["phases"][0];
    let published = phase["published"].as_u64().unwrap();
    assert!(published > 0);
    assert_eq!(
        phase["expected_deliveries"].as_u64().unwrap(),
        published * 100,
        "2 channels × 100 subscribers"
    );
    assert_eq!(phase["expected_deliveries"], phase["received_deliveries"], "{phase}");
    in_order_and_routed(phase);
    let scrape = scrape(&server.addr());
    assert_eq!(metric(&scrape, "corecast_deflate_negotiated_total"), Some(200.0), "{scrape}");
    let compressed = metric(&scrape, "corecast_deflate_frames_total").unwrap_or(0.0);
    assert!(
        compressed >= phase["received_deliveries"].as_f64().unwrap(),
        "frames sent compressed: {compressed}"
    );
}

/// Every subscriber saw its channel's events, each publisher's in sequence.
fn in_order_and_routed(phase: &Value) {
    assert_eq!(phase["seq_gaps"], 0, "{phase}");
    assert_eq!(phase["out_of_order"], 0, "{phase}");
    assert_eq!(phase["misrouted"], 0, "{phase}");
}

/// The phase counted the server's send calls (perf stat, or corecast's /metrics counters) and
/// divided the deliveries by them.
fn sends_counted(phase: &Value) {
    let sends = &phase["server_sends"];
    assert!(sends["send_calls"].as_u64().unwrap_or(0) > 0, "no send calls counted: {sends}");
    let per_send = sends["deliveries_per_send"].as_f64().unwrap_or(0.0);
    let expect = phase["received_deliveries"].as_f64().unwrap() / sends["send_calls"].as_f64().unwrap();
    assert!((per_send - expect).abs() < 0.01, "{sends}");
}

/// `--coalesce-ms` under a sustained fan-out: one core holds 2,000 subscribers, so a pass over
/// them outlasts the 5 ms between events and its backlog does not clear; the flusher then holds
/// connections back (counted), each send carries several events, and every event still
/// arrives, in order.
#[test]
fn fanout_under_coalesce_ms_holds_batches_and_loses_nothing() {
    let server = Server::start(&["--cores", "1", "--coalesce-ms", "20"]);
    let f = run(
        &server,
        &["--per-worker", "1000"],
        &["fanout", "--subscribers", "2000", "--channels", "1", "--rate", "200", "--duration", "2"],
    );
    no_failures(&f);
    let phase = &f["phases"][0];
    assert_eq!(phase["lost"], 0, "{phase}");
    assert_eq!(phase["expected_deliveries"], phase["received_deliveries"], "{phase}");
    in_order_and_routed(phase);
    sends_counted(phase);
    // Held for 20 ms with an event every 5 ms: about 4 events per send once holding.
    let per_send = phase["server_sends"]["deliveries_per_send"].as_f64().unwrap();
    assert!(per_send >= 3.0, "deliveries per send {per_send}: {phase}");
    let scrape = scrape(&server.addr());
    let holds = metric(&scrape, "corecast_flush_holds_total").unwrap_or(0.0);
    assert!(holds > 0.0, "the flusher never held a connection back: {scrape}");
}

#[test]
fn fanout_counts_the_servers_send_calls() {
    let server = Server::start(&["--cores", "2"]);
    let f = run(
        &server,
        &[],
        &["fanout", "--subscribers", "100", "--channels", "2", "--rate", "20", "--duration", "1"],
    );
    no_failures(&f);
    let phase = &f["phases"][0];
    assert_eq!(phase["lost"], 0, "{phase}");
    sends_counted(phase);
    assert!(f["headline"].as_str().unwrap().contains("deliveries per send"), "{f}");
}

#[test]
fn plain_fanout_through_uws_broadcast() {
    let uws = Uws::start();
    let f = run_against(
        &uws.addr(),
        uws.child.id(),
        &["--protocol", "plain", "--per-worker", "100"],
        &[
            "fanout",
            "--subscribers",
            "200",
            "--channels",
            "4",
            "--rate",
            "40",
            "--duration",
            "1",
            "--publishers",
            "3",
        ],
    );
    no_failures(&f);
    assert_eq!(f["subscribed"], 200);
    let phase = &f["phases"][0];
    let published = phase["published"].as_u64().unwrap();
    assert!(published > 0, "{phase}");
    assert_eq!(phase["publish_errors"], 0, "{phase}");
    assert_eq!(phase["expected_deliveries"].as_u64().unwrap(), published * 50, "4 channels × 50 subscribers");
    assert_eq!(phase["received_deliveries"], phase["expected_deliveries"], "{phase}");
    in_order_and_routed(phase);
    sends_counted(phase);
}

#[test]
fn plain_fanout_find_max_through_uws_broadcast() {
    let uws = Uws::start();
    let f = run_against(
        &uws.addr(),
        uws.child.id(),
        &["--protocol", "plain"],
        &[
            "fanout",
            "--subscribers",
            "60",
            "--rate",
            "10",
            "--find-max",
            "--phase-secs",
            "0.5",
            "--max-phases",
            "2",
            "--max-p99-ms",
            "100000",
            "--count-sends",
            "off",
        ],
    );
    no_failures(&f);
    let phases = f["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert!(phases[1]["target_events_per_second"].as_f64() > phases[0]["target_events_per_second"].as_f64());
    assert_eq!(f["sustained_max"]["lost"], 0, "{f}");
    assert!(f["headline"].as_str().unwrap().starts_with("sustained max: "), "{f}");
}

/// The receive loop's self-test floods frames over loopback (frames split across reads
/// included) and must count every one in sequence; it fails on any gap or reordering.
#[test]
fn recv_bench_counts_a_flood_exactly() {
    let out = std::env::temp_dir().join(format!("corecast-recv-bench-{}", std::process::id()));
    let result = Command::new(harness())
        .args(["--out", out.to_str().unwrap()])
        .args([
            "recv-bench",
            "--connections",
            "50",
            "--frames-per-write",
            "7",
            "--payload",
            "300",
            "--duration",
            "0.5",
        ])
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let f = &report["figures"];
    assert!(f["frames_per_second"].as_f64().unwrap() > 0.0, "{f}");
    assert!(f["parse_only_frames_per_second"].as_f64().unwrap() > 0.0, "{f}");
    assert_eq!(f["seq_gaps"], 0, "{f}");
    assert_eq!(f["out_of_order_or_misrouted"], 0, "{f}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn table_of_recorded_runs() {
    let server = Server::start(&[]);
    let out = std::env::temp_dir().join(format!("corecast-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let charts = out.join("charts");
    let status = Command::new(harness())
        .args(["--server", &server.addr(), "--label", "corecast", "--out", out.to_str().unwrap()])
        .args(["--charts-to", charts.to_str().unwrap()])
        .args(["fanout", "--subscribers", "20", "--rate", "10", "--duration", "0.5", "--count-sends", "off"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for f in ["throughput.svg", "latency.svg", "cpu.svg", "kernel_memory.svg", "summary.txt"] {
        assert!(charts.join(f).exists(), "--charts-to did not copy {f}");
    }
    let table = Command::new(harness()).arg("table").arg(&out).output().unwrap();
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let table = String::from_utf8(table.stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("| corecast |")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("| 20 | 1 | one phase |"), "{row}");
    assert!(row.ends_with("| none |"), "{row}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn fanout_find_max() {
    let server = Server::start(&[]);
    let f = run(
        &server,
        &[],
        &[
            "fanout",
            "--subscribers",
            "50",
            "--rate",
            "10",
            "--find-max",
            "--phase-secs",
            "0.5",
            "--max-phases",
            "2",
            "--max-p99-ms",
            "100000",
        ],
    );
    let phases = f["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert!(phases[1]["target_events_per_second"].as_f64() > phases[0]["target_events_per_second"].as_f64());
    assert!(f["sustained_max"].is_object(), "{f}");
}

/// A start above the server's maximum (here: no phase can meet a 0 ms p99) halves the rate
/// instead of reporting nothing after one phase.
#[test]
fn fanout_find_max_descends_from_a_rate_above_the_maximum() {
    let server = Server::start(&[]);
    let f = run(
        &server,
        &[],
        &[
            "fanout",
            "--subscribers",
            "10",
            "--rate",
            "8",
            "--find-max",
            "--phase-secs",
            "0.3",
            "--max-phases",
            "3",
            "--max-p99-ms",
            "0",
            "--count-sends",
            "off",
        ],
    );
    let rates: Vec<f64> = f["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target_events_per_second"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [8.0, 4.0, 2.0], "{f}");
    assert!(f["sustained_max"].is_null(), "{f}");
}

#[test]
fn presence() {
    let server = Server::start(&["--cores", "2"]);
    let f = run(
        &server,
        &[],
        &[
            "presence",
            "--connections",
            "60",
            "--channels",
            "3",
            "--conns-per-user",
            "2",
            "--stay-ms",
            "200",
            "--duration",
            "1",
        ],
    );
    no_failures(&f);
    assert_eq!(f["user_counts_match"], true, "{f}");
    assert_eq!(f["empty_after"], true, "{f}");
    assert_eq!(f["expected_user_counts"], serde_json::json!([10, 10, 10]));
}

#[test]
fn churn() {
    let server = Server::start(&["--cores", "2"]);
    let f = run(
        &server,
        &[],
        &[
            "churn",
            "--steady",
            "40",
            "--churners",
            "40",
            "--channels",
            "4",
            "--stay-ms",
            "200",
            "--jitter-ms",
            "50",
            "--rate",
            "20",
            "--duration",
            "1",
        ],
    );
    no_failures(&f);
    assert_eq!(f["steady_lost"], 0, "{f}");
    assert_eq!(f["steady_expected_deliveries"], f["steady_received_deliveries"]);
    assert!(f["published"].as_u64().unwrap() > 0);
}

#[test]
fn echo() {
    let server = Server::start(&["--echo"]);
    let f = run(
        &server,
        &["--protocol", "raw", "--path", "/echo"],
        &["echo", "--connections", "5", "--duration", "0.5"],
    );
    no_failures(&f);
    assert!(f["round_trips"].as_u64().unwrap() > 0);
    assert_eq!(f["latency"]["count"], f["round_trips"]);
}
