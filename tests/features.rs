//! The Pusher features users ask soketi, Reverb and sockudo for, with unmodified pusher-js 8
//! and the official Node server SDK against the real binary (one node; tests/cluster.rs covers
//! several): watchlist events, authorized connections, live subscription counts, origin checks
//! and webhook filters with headers (also checked by the PyPI SDK). Scenarios live in
//! tests/clients/features and tests/clients/python_webhook_filters.py.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A config file with one app (the development credentials) and `extra` app keys.
fn config(name: &str, extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[[apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nclient_events = true\n\
         user_authentication = true\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(cfg: &Path) -> Server {
    Server::start(&["--config", cfg.to_str().unwrap(), "--cores", "2"])
}

fn scenario(server: &Server, script: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new(node());
    cmd.arg(format!("{}/tests/clients/features/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", server.port.to_string())
        .envs(env.iter().copied());
    run_client(&mut cmd, script, || server.log());
}

#[test]
fn pusher_js_watchlist_initial_state_and_changes_across_cores() {
    let cfg = config("watchlist", "watchlist_events = true");
    scenario(&start(&cfg), "watchlist.js", &[]);
}

#[test]
fn pusher_js_connections_that_do_not_authorize_are_closed_with_4009() {
    let cfg = config("authorized", "authorized_connections_timeout = 3");
    scenario(&start(&cfg), "authorized.js", &[("TIMEOUT_S", "3")]);
}

#[test]
fn pusher_js_live_subscription_counts_match_the_http_api() {
    let cfg = config("counts", "subscription_count_events = true\nsubscription_count_interval = 1");
    scenario(&start(&cfg), "subscription_count.js", &[("INTERVAL_S", "1")]);
}

#[test]
fn pusher_js_origins_outside_allowed_origins_are_refused_and_counted() {
    let cfg = config("origins", "allowed_origins = [\"https://app.example.com\", \"*.example.org\"]");
    scenario(&start(&cfg), "origins.js", &[]);
}

#[test]
fn webhook_receivers_get_only_their_events_signed_with_their_headers() {
    let hook = free_port();
    let extra = format!(
        "webhooks = [\n  \"http://127.0.0.1:{hook}/all\",\n  \
         {{ url = \"http://127.0.0.1:{hook}/presence\", event_types = [\"member_added\", \"member_removed\"], \
         headers = {{ X-Receiver-Token = \"s3cret\" }} }},\n  \
         {{ url = \"http://127.0.0.1:{hook}/beta\", event_types = [\"channel_occupied\", \"channel_vacated\"], \
         filter = {{ channel_name_ends_with = \"-beta\" }} }},\n]"
    );
    let cfg = config("webhooks", &extra);
    scenario(&start(&cfg), "webhook_filters.js", &[("HOOK_PORT", &hook.to_string())]);
}

#[test]
fn webhook_filters_and_headers_with_the_official_python_sdk() {
    let hook = free_port();
    let extra = format!(
        "webhooks = [\n  \"http://127.0.0.1:{hook}/all\",\n  \
         {{ url = \"http://127.0.0.1:{hook}/members\", event_types = [\"member_added\", \"member_removed\"], \
         headers = {{ X-Receiver-Token = \"s3cret\" }} }},\n  \
         {{ url = \"http://127.0.0.1:{hook}/beta\", filter = {{ channel_name_ends_with = \"-beta\" }} }},\n]"
    );
    let cfg = config("webhooks-py", &extra);
    let server = start(&cfg);
    let mut cmd = Command::new(venv_python());
    cmd.arg(format!("{}/tests/clients/python_webhook_filters.py", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port.to_string())
        .arg(hook.to_string());
    run_client(&mut cmd, "python_webhook_filters.py", || server.log());
}

/// The handshake refusal as a raw client sees it: `pusher:error` 4009, then close 4009.
#[test]
fn refused_origin_gets_pusher_error_then_close_4009() {
    let cfg = config("origins-raw", "allowed_origins = [\"https://app.example.com\"]");
    let server = start(&cfg);
    let upgrade = upgrade_request("/app/app-key?protocol=7")
        .replace("Host: localhost\r\n", "Host: localhost\r\nOrigin: https://evil.example.com\r\n");
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, upgrade.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_, payload) = read_frame(&mut s).expect("pusher:error");
    let msg: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(msg["event"], "pusher:error");
    assert_eq!(msg["data"]["code"], 4009);
    assert_eq!(
        msg["data"]["message"],
        "Origin not allowed: https://evil.example.com is not in this app's allowed_origins"
    );
    assert_eq!(read_close_code(&mut s), Some(4009));
}
