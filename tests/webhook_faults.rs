//! Webhook receivers that hang, fail or are down: delivery to subscribers never stalls (a
//! fan-out with heavy channel churn, so many webhooks, completes with no loss, and the failures
//! are counted); a failed batch is retried with backoff and delivered once; a hanging URL does
//! not delay a healthy URL of the same app. Receivers in tests/clients/pusher/webhook_delivery.js
//! check every body with the official Node SDK.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 200;
const CHANNELS: usize = 10;
const EVENTS: usize = 100;

async fn subscriber(url: String, channel: String, ready: tokio::sync::mpsc::Sender<()>) -> usize {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let sub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
    ws.send(Message::text(sub)).await.unwrap();
    let mut got = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        let Message::Text(t) = msg else { continue };
        if t.contains("subscription_succeeded") {
            ready.send(()).await.unwrap();
        } else if t.contains("\"event\":\"tick\"") {
            got += 1;
        } else if t.contains("\"event\":\"end\"") {
            break;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_dead_receivers_do_not_stall_fan_out() {
    // A receiver that accepts and never answers, and a port nobody listens on.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });
    let urls = format!("http://127.0.0.1:{hang_port}/hooks,http://127.0.0.1:{}/hooks", free_port());
    let server = Server::start(&["--cores", "2", "--webhook-url", &urls]);
    let url = server.url("/app/app-key?protocol=7");

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let mut tasks = Vec::new();
    for i in 0..SUBSCRIBERS {
        tasks.push(tokio::spawn(subscriber(url.clone(), format!("c{}", i % CHANNELS), ready_tx.clone())));
    }
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await.unwrap().unwrap();
    }
    // Churn: connections that subscribe to fresh channels and leave make occupied/vacated hooks.
    let churn_url = url.clone();
    let churn = tokio::spawn(async move {
        for i in 0..100 {
            let (mut ws, _) = tokio_tungstenite::connect_async(churn_url.clone()).await.unwrap();
            let sub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"churn-{i}"}}}}"#);
            ws.send(Message::text(sub)).await.unwrap();
            let _ = ws.next().await;
            let _ = ws.next().await;
            let _ = ws.close(None).await;
        }
    });
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        for _ in 0..EVENTS {
            for c in 0..CHANNELS {
                let (status, _) = publish(&addr, &[&format!("c{c}")], "tick", "payload");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            }
        }
        for c in 0..CHANNELS {
            publish(&addr, &[&format!("c{c}")], "end", "");
        }
    })
    .await
    .unwrap();
    churn.await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), EVENTS, "a subscriber lost events");
    }
    // The failures are counted (the dead receiver refuses at once).
    let metrics = String::from_utf8(raw_exchange(
        &server.addr(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    ))
    .unwrap();
    let failed: u64 = metrics
        .lines()
        .find(|l| l.starts_with("corecast_webhooks_failed_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("webhooks_failed in /metrics");
    assert!(failed > 0, "{metrics}");
}

/// tests/clients/pusher/webhook_delivery.js in `mode` against `server`.
fn delivery_scenario(server: &Server, mode: &str, env: &[(&str, String)]) {
    let mut cmd = std::process::Command::new(node());
    cmd.arg(format!("{}/tests/clients/pusher/webhook_delivery.js", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", server.port.to_string())
        .env("MODE", mode)
        .envs(env.iter().map(|(k, v)| (k, v)));
    eprint!("{}", run_client(&mut cmd, &format!("webhook_delivery.js {mode}"), || server.log()));
}

#[test]
fn webhook_failing_twice_is_retried_with_backoff_and_delivered_once() {
    let hook = free_port();
    let server = Server::start(&["--cores", "2", "--webhook-url", &format!("http://127.0.0.1:{hook}/hooks")]);
    delivery_scenario(&server, "retry", &[("HOOK_PORT", hook.to_string())]);
}

#[test]
fn hanging_webhook_url_does_not_delay_a_healthy_url_of_the_same_app() {
    let (hang, hook) = (free_port(), free_port());
    let urls = format!("http://127.0.0.1:{hang}/hooks,http://127.0.0.1:{hook}/hooks");
    let server = Server::start(&["--cores", "2", "--webhook-url", &urls]);
    delivery_scenario(&server, "hang", &[("HANG_PORT", hang.to_string()), ("HOOK_PORT", hook.to_string())]);
}
