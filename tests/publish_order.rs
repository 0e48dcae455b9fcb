//! Regression: a backend that waits for each publish's answer before the next (the SDKs do, on
//! new or pooled connections that land on any core) must see its events arrive in publish
//! order everywhere. The answer used to leave once the event was handed to the other core's
//! ring, so the next publish, taken by that other core, could overtake it.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 40;

async fn subscriber(url: String, ready: tokio::sync::mpsc::Sender<()>, events: usize) -> Vec<u64> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let sub = r#"{"event":"pusher:subscribe","data":{"channel":"ordered"}}"#;
    ws.send(Message::text(sub)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < events {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await else { break };
        let Message::Text(t) = msg else { continue };
        if t.contains("subscription_succeeded") {
            ready.send(()).await.unwrap();
        } else if t.contains("\"event\":\"n\"") {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            got.push(v["data"].as_str().unwrap().parse().unwrap());
        }
    }
    got
}

async fn publish_in_order(ring_capacity: &str, events: usize) {
    let server = Server::start(&["--cores", "2", "--ring-capacity", ring_capacity]);
    let url = server.url("/app/app-key?protocol=7");
    let (tx, mut rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let subs: Vec<_> =
        (0..SUBSCRIBERS).map(|_| tokio::spawn(subscriber(url.clone(), tx.clone(), events))).collect();
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    }
    let addr = server.addr();
    tokio::task::spawn_blocking(move || {
        for i in 0..events {
            // A new connection per request, as a backend without keep-alive makes.
            let (status, _) = publish(&addr, &["ordered"], "n", &i.to_string());
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        }
    })
    .await
    .unwrap();
    for s in subs {
        let got = s.await.unwrap();
        let want: Vec<u64> = (0..events as u64).collect();
        let first_wrong = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(got.len(), events, "every event arrived");
        assert!(
            first_wrong.is_none(),
            "out of order near {:?}",
            first_wrong.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_sequential_publishes_arrive_in_order_across_cores() {
    publish_in_order("4096", 1500).await;
}

/// The same with rings of one slot, so most hand-offs wait in the sender's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_sequential_publishes_arrive_in_order_with_full_rings() {
    publish_in_order("1", 300).await;
}
