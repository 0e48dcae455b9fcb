//! benches/million.sh at a small size: the same path as the recorded million-connection run
//! (its own network namespace, tuning applied and restored, Redis, several corecast nodes sharing
//! one port, `corecast-load broadcast` over many source addresses), with 6,000 connections over
//! 3 nodes and a short hold. Asserts the run's summary — every connection held, every broadcast
//! delivered to every connection — and that the script leaves nothing behind, also when it is
//! interrupted. Needs root (namespaces, sysctls) and redis-server (scripts/test-deps.sh).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One run at a time: runs save and restore global sysctls (the script also refuses a second).
static ONE_RUN: Mutex<()> = Mutex::new(());

/// `cargo test --workspace` (what scripts/test runs) builds the harness next to this test.
fn harness() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("corecast-load");
    assert!(path.exists(), "{} is missing: run `cargo test --workspace` (scripts/test does)", path.display());
    path
}

/// What the run needs from the machine; a missing piece fails the test saying what to do.
fn preconditions() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().nth(1));
    assert!(
        euid == Some("0"),
        "benches/million.sh needs root (a network namespace and sysctls): run the suite as root, as CI does"
    );
    apt_command("redis-server", "redis-server");
    for (tool, package) in [("ip", "iproute2"), ("nstat", "iproute2"), ("nsenter", "util-linux")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is missing: scripts/test-deps.sh installs it (Debian package {package})");
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/million.sh")
}

fn out_dir(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("corecast-million-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

fn sysctl(key: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(key.replace('.', "/"))).unwrap().trim().to_string()
}

fn namespaces() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned()
}

fn alive(pid: u32) -> bool {
    // A zombie has no memory map left; anything else still runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// The node pids the script logged ("... nodes listening on ...; pids 1 2 3").
fn node_pids(log: &str) -> Vec<u32> {
    log.lines()
        .find_map(|l| l.split("; pids ").nth(1))
        .map(|p| p.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .unwrap_or_default()
}

/// Everything the script started is gone, its namespace deleted, the global sysctls as before.
fn assert_left_nothing(log: &str, backlog_before: &str) {
    let pids = node_pids(log);
    assert!(!pids.is_empty(), "the script logged its nodes' pids:\n{log}");
    poll(
        "the nodes to be gone",
        Duration::from_secs(10),
        || pids.iter().all(|&p| !alive(p)).then_some(()),
        || format!("still alive: {:?}", pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()),
    );
    let ns = namespaces();
    assert!(!ns.contains("corecast-million-"), "the run's network namespace is left: {ns}");
    assert_eq!(sysctl("net.core.netdev_max_backlog"), backlog_before, "global sysctl not restored:\n{log}");
}

#[test]
fn million_small_holds_6000_connections_over_3_nodes_and_delivers_every_broadcast_to_all() {
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    preconditions();
    let backlog = sysctl("net.core.netdev_max_backlog");
    let out = out_dir("run");
    let run = Command::new(script())
        .args(["--connections", "6000", "--nodes", "3", "--hold", "5", "--rounds", "2", "--rate", "5000"])
        .args(["--activity-timeout", "3", "--deadline", "300", "--out", out.to_str().unwrap()])
        .arg("--corecast")
        .arg(env!("CARGO_BIN_EXE_corecast"))
        .arg("--load")
        .arg(harness())
        .output()
        .expect("bash runs benches/million.sh");
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "benches/million.sh failed ({}):\n{log}", run.status);

    let summary = std::fs::read_to_string(out.join("million.txt")).expect("million.txt");
    assert!(summary.contains("passed: true"), "{summary}");
    assert!(summary.contains("3 of 3 alive after the run"), "{summary}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/report.json")).unwrap()).unwrap();
    let f = &report["figures"];
    assert_eq!(f["passed"], true, "{f}");
    assert_eq!(f["connected"], 6000, "{f}");
    assert_eq!(f["subscribed"], 6000, "{f}");
    assert_eq!(f["held"], 6000, "{f}");
    assert_eq!(f["min_open_during_hold"], 6000, "{f}");
    assert_eq!(f["closed_during_hold"], 0, "{f}");
    // --activity-timeout 3 makes the nodes ping during the 5 s hold; the harness answers, and
    // no connection is cut off (closed_during_hold above).
    assert!(f["pongs_during_hold"].as_u64().unwrap() > 0, "the nodes pinged during the hold: {f}");
    assert_eq!(f["nodes"]["processes"], 3, "{f}");
    assert_eq!(f["nodes"]["connections"]["mean"], 2000.0, "{f}");
    assert!(f["nodes"]["connections"]["min"].as_f64().unwrap() > 0.0, "every node took connections: {f}");
    let rounds = f["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{f}");
    for r in rounds {
        assert_eq!(r["expected_deliveries"], 6000, "{r}");
        assert_eq!(r["received_deliveries"], 6000, "{r}");
        for k in ["lost", "duplicates_or_extra", "misrouted", "out_of_order", "seq_gaps", "events_refused"] {
            assert_eq!(r[k], 0, "{k}: {r}");
        }
        assert!(r["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(f["lost"], 0, "{f}");
    for key in ["server_rss_per_connection", "kernel_slab_per_socket", "harness_rss_per_socket"] {
        assert!(f[key].as_f64().is_some_and(|v| v > 0.0), "{key} measured: {f}");
    }
    for chart in ["connections.svg", "server_rss.svg", "kernel_memory.svg", "cpu.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(out.join("run").join(chart)).unwrap_or_default();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart} missing or broken");
    }
    assert_left_nothing(&log, &backlog);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn million_small_interrupted_during_the_hold_stops_everything_and_restores_the_sysctls() {
    let _one = ONE_RUN.lock().unwrap_or_else(|e| e.into_inner());
    preconditions();
    let backlog = sysctl("net.core.netdev_max_backlog");
    let out = out_dir("interrupted");
    let mut child = Command::new(script())
        .args(["--connections", "4000", "--nodes", "2", "--hold", "120", "--deadline", "300"])
        .args(["--out", out.to_str().unwrap()])
        .arg("--corecast")
        .arg(env!("CARGO_BIN_EXE_corecast"))
        .arg("--load")
        .arg(harness())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs benches/million.sh");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    // Wait until the harness holds every connection (it says so when the hold begins), then
    // interrupt.
    let deadline = Instant::now() + Duration::from_secs(120);
    let holding = loop {
        while let Ok(line) = rx.try_recv() {
            log.push_str(&line);
            log.push('\n');
        }
        let harness = std::fs::read_to_string(out.join("harness.log")).unwrap_or_default();
        if harness.contains("holding 4000 connections") {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(holding, "the run never held its 4,000 connections:\n{log}");
    assert_ne!(sysctl("net.core.netdev_max_backlog"), backlog, "the run raised the global backlog");
    // SIGTERM, which the script traps like SIGINT: a test binary started as a background job of
    // a non-interactive shell inherits SIGINT ignored, and bash cannot trap a signal ignored
    // on entry (the script would then run its whole hold).
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -TERM {}", child.id());
    let status = poll(
        "benches/million.sh to stop after SIGTERM",
        Duration::from_secs(60),
        || child.try_wait().unwrap(),
        || log.clone(),
    );
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(!status.success(), "an interrupted run does not pass:\n{log}");
    assert!(log.contains("interrupted") && log.contains("cleaning up"), "{log}");
    assert_left_nothing(&log, &backlog);
    let _ = std::fs::remove_dir_all(&out);
}
