//! The Pusher protocol with the official clients: pusher-js (Node) and the official server SDKs
//! (npm `pusher`, PyPI `pusher`) against the real binary. Scenarios live in tests/clients/pusher.

mod common;

use std::process::Command;

use common::*;

/// Runs tests/clients/`script` with the test venv's Python: `script PORT [args]`.
fn python(server: &Server, script: &str, args: &[String]) {
    let env = testenv();
    let out = Command::new(env.join("py/bin/python"))
        .arg(format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port.to_string())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

fn scenario(server: &Server, script: &str, env: &[(&str, &str)]) {
    testenv();
    let out = Command::new("node")
        .arg(format!("{}/tests/clients/pusher/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", server.port.to_string())
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

#[test]
fn pusher_js_channels() {
    scenario(&Server::start(&[]), "channels.js", &[]);
}

#[test]
fn pusher_js_presence_across_cores() {
    scenario(&Server::start(&["--cores", "2"]), "presence.js", &[("CORES", "2")]);
}

#[test]
fn pusher_js_client_events() {
    scenario(&Server::start(&[]), "client_events.js", &[]);
}

#[test]
fn pusher_js_signin_and_user_events() {
    scenario(&Server::start(&[]), "signin.js", &[]);
}

#[test]
fn cross_core_delivery_in_publish_order() {
    scenario(&Server::start(&["--cores", "2"]), "cross_core.js", &[("CORES", "2")]);
}

#[test]
fn unknown_app_key_is_4001() {
    scenario(&Server::start(&[]), "errors.js", &[("MODE", "unknown-key")]);
}

#[test]
fn unsupported_protocol_is_4007() {
    scenario(&Server::start(&[]), "errors.js", &[("MODE", "protocol")]);
}

#[test]
fn app_connection_quota_is_4004() {
    let dir = std::env::temp_dir().join(format!("corecast-quota-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("quota.toml");
    std::fs::write(
        &cfg,
        "[[apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_connections = 2\n",
    )
    .unwrap();
    let server = Server::start(&["--config", cfg.to_str().unwrap(), "--cores", "2"]);
    scenario(&server, "errors.js", &[("MODE", "quota")]);
}

#[test]
fn server_over_capacity_is_4100_for_pusher_clients() {
    scenario(
        &Server::start(&["--cores", "1", "--max-connections", "2"]),
        "errors.js",
        &[("MODE", "capacity")],
    );
}

#[test]
fn silent_client_is_pinged_then_closed_with_4201() {
    let server = Server::start(&["--activity-timeout", "1", "--pong-timeout", "1"]);
    scenario(&server, "errors.js", &[("MODE", "pong-timeout")]);
}

#[test]
fn pusher_js_answers_server_pings_and_stays() {
    let server = Server::start(&["--activity-timeout", "1", "--pong-timeout", "1"]);
    scenario(&server, "errors.js", &[("MODE", "alive")]);
}

#[test]
fn official_python_sdk_signs_and_publishes() {
    python(&Server::start(&[]), "pusher_python_sdk.py", &[]);
}

#[test]
fn http_api_with_the_official_node_sdk() {
    scenario(&Server::start(&["--cores", "2"]), "http_api.js", &[]);
}

#[test]
fn webhooks_verified_by_the_official_node_sdk() {
    let hook = free_port();
    let url = format!("http://127.0.0.1:{hook}/hooks");
    let server = Server::start(&["--cores", "2", "--webhook-url", &url]);
    scenario(&server, "webhooks.js", &[("HOOK_PORT", &hook.to_string())]);
}

#[test]
fn http_api_and_webhooks_with_the_official_python_sdk() {
    let hook = free_port();
    let url = format!("http://127.0.0.1:{hook}/hooks");
    let server = Server::start(&["--cores", "2", "--webhook-url", &url]);
    python(&server, "pusher_python_api_webhooks.py", &[hook.to_string()]);
}

#[test]
fn metrics_match_the_work_done() {
    python(&Server::start(&["--cores", "2"]), "metrics_check.py", &[]);
}

#[test]
fn per_app_limits_answer_with_pusher_codes() {
    let dir = std::env::temp_dir().join(format!("corecast-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("limits.toml");
    std::fs::write(
        &cfg,
        "[[apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nclient_events = true\n\
         max_channels_per_connection = 2\nmax_event_bytes = 100\nmax_api_requests_per_second = 4\n",
    )
    .unwrap();
    python(&Server::start(&["--config", cfg.to_str().unwrap(), "--cores", "2"]), "app_limits.py", &[]);
}
