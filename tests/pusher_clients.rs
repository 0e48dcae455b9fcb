//! The Pusher protocol with the official clients: pusher-js (Node) and the official server SDKs
//! (npm `pusher`, PyPI `pusher`) against the real binary. Scenarios live in tests/clients/pusher.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs tests/clients/`script` with the test venv's Python: `script PORT [args]`.
fn python(server: &Server, script: &str, args: &[String]) {
    let mut cmd = Command::new(venv_python());
    cmd.arg(format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(server.port.to_string())
        .args(args);
    run_client(&mut cmd, script, || server.log());
}

fn scenario(server: &Server, script: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new(node());
    cmd.arg(format!("{}/tests/clients/pusher/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", server.port.to_string())
        .envs(env.iter().copied());
    run_client(&mut cmd, script, || server.log());
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

/// A config file with the development app and any `extra` TOML, in a fresh directory.
fn config(name: &str, toml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    cfg
}

#[test]
fn disabled_app_is_403_for_the_api_and_4003_for_clients() {
    let cfg = config(
        "disabled",
        "[[apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\n\
         [[apps]]\nid = \"2\"\nkey = \"app2-key\"\nsecret = \"app2-secret\"\nenabled = false\n",
    );
    python(&Server::start(&["--config", cfg.to_str().unwrap(), "--cores", "2"]), "disabled_app.py", &[]);
}

#[test]
fn batch_events_with_one_invalid_event_sends_none() {
    scenario(&Server::start(&["--cores", "2"]), "batch_events.js", &[]);
}

#[test]
fn client_ping_is_answered_with_pong() {
    scenario(&Server::start(&[]), "ping_pong.js", &[]);
}

/// SIGTERM: every Pusher client gets pusher:error 4200, then close 1001; pusher-js reconnects by
/// itself, here to a new server on the same port (a restart behind a fixed address).
#[test]
fn drain_sends_4200_before_1001_and_pusher_js_reconnects() {
    let mut first = Server::start(&["--cores", "2", "--node-id", "1", "--drain-timeout", "10"]);
    let port = first.port.to_string();
    let mut script = Command::new(node())
        .arg(format!("{}/tests/clients/pusher/drain.js", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", &port)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = script.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let output = |script: std::process::Child| {
        let out = script.wait_with_output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    if !matches!(rx.recv_timeout(Duration::from_secs(20)).as_deref(), Ok("ready")) {
        let _ = script.kill();
        panic!("drain.js did not get ready:\n{}\n{}", output(script), first.log());
    }
    first.signal(15);
    let status = first.wait_exit(Duration::from_secs(10)).expect("the drained server exits");
    assert_eq!(status.code(), Some(0), "{}", first.log());
    let second = Server::start(&["--port", &port, "--cores", "2", "--node-id", "2"]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = script.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = script.kill();
            break script.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "drain.js failed ({status}):\n{}\n{}\nfirst server:\n{}\nsecond server:\n{}",
        lines.join("\n"),
        output(script),
        first.log(),
        second.log()
    );
    eprintln!("{}", lines.join("\n"));
}

/// pusher-js with `forceTLS: true` and the official Node server SDK with `useTLS: true` against
/// corecast serving TLS; Node trusts only the test CA (NODE_EXTRA_CA_CERTS) and verifies.
#[test]
fn pusher_js_force_tls_with_the_node_sdk_over_https() {
    let pki = common::tls::Pki::new("pusher-js");
    pki.issue("corecast pusher-js");
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let server = Server::start(&["--cores", "2", "--tls-cert", cert, "--tls-key", key]);
    scenario(&server, "tls.js", &[("NODE_EXTRA_CA_CERTS", pki.ca_pem.to_str().unwrap())]);
}
