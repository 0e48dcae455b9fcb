//! The load harness (benches/load, `corecast-load`) runs every scenario at a tiny size against
//! the real server and produces its summary, JSON report and charts with consistent counts.
//! No timing assertions: figures are checked for consistency, not speed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;

/// `cargo test --workspace` (what scripts/test runs) builds the harness next to this test.
fn harness() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("corecast-load");
    assert!(path.exists(), "{} is missing: run `cargo test --workspace` (scripts/test does)", path.display());
    path
}

fn run(server: &Server, global: &[&str], scenario: &[&str]) -> Value {
    // One directory per test (tests run in parallel, and two may run the same scenario).
    let test = std::thread::current().name().unwrap_or("test").replace("::", "-");
    let out = std::env::temp_dir().join(format!("corecast-harness-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let result = Command::new(harness())
        .args([
            "--server",
            &server.addr(),
            "--label",
            "corecast",
            "--out",
            out.to_str().unwrap(),
            "--sample-ms",
            "200",
        ])
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
        "cpu.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart} missing or broken");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["scenario"], scenario[0]);
    assert!(!report["timeline"].as_array().unwrap().is_empty(), "a timeline");
    assert_eq!(report["server_pid"], server.child.id(), "the server process was sampled");
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
