//! The panic policy: a panicking core or a panicking Redis bridge takes the whole process down
//! at once (SIGABRT), instead of leaving a half-alive node. Uses the debug-build fault injection
//! (CORECAST_DEBUG_FAULTS=1).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::*;

fn post(addr: &str, path: &str) -> String {
    let req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    String::from_utf8_lossy(&raw_exchange(addr, req.as_bytes(), Duration::from_secs(3))).into_owned()
}

fn assert_aborted(server: &mut Server, what: &str) {
    let status = server.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| panic!("{what}: still running"));
    assert_eq!(status.signal(), Some(libc_sigabrt()), "{what}: exit {status:?}\n{}", server.log());
    let log = server.log();
    assert!(log.contains("fault injection"), "{what}: the panic is logged:\n{log}");
    assert!(log.contains("aborting so that the supervisor restarts this node"), "{log}");
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn a_panicking_core_takes_the_process_down() {
    let mut server = Server::start_with_env(&["--cores", "2"], &[("CORECAST_DEBUG_FAULTS", "1")]);
    // A connection on each core first: the process must not stay half alive for them.
    let _a = raw_ws(&server.addr(), "/app/app-key?protocol=7");
    let _b = raw_ws(&server.addr(), "/app/app-key?protocol=7");
    post(&server.addr(), "/debug/panic");
    assert_aborted(&mut server, "core panic");
}

#[test]
fn fault_routes_are_absent_unless_enabled() {
    let server = Server::start(&["--cores", "1"]);
    let resp = post(&server.addr(), "/debug/panic");
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    // Still serving.
    assert!(post(&server.addr(), "/debug/panic").starts_with("HTTP/1.1 404 "));
}

#[test]
fn a_panicking_redis_bridge_takes_the_process_down() {
    let port = free_port();
    let mut redis = std::process::Command::new(apt_command("redis-server", "redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test-deps.sh installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    let mut server =
        Server::start_with_env(&["--cores", "2", "--redis", &url], &[("CORECAST_DEBUG_FAULTS", "1")]);
    let resp = post(&server.addr(), "/debug/panic-bridge");
    assert!(resp.starts_with("HTTP/1.1 202 "), "{resp}");
    assert_aborted(&mut server, "bridge panic");
    let _ = redis.kill();
    let _ = redis.wait();
}
