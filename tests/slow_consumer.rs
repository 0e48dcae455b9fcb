//! A subscriber that stops reading is cut off at its output bound (pusher:error 4100, close)
//! while a thousand others keep receiving everything, and server memory stays bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SUBSCRIBERS: usize = 1000;
const EVENTS: usize = 300;
const EVENT_BYTES: usize = 2000;

async fn subscriber(
    url: String,
    done: tokio::sync::mpsc::Sender<usize>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.unwrap();
    ws.send(Message::text(r#"{"event":"pusher:subscribe","data":{"channel":"feed"}}"#)).await.unwrap();
    let mut received = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        if t.contains("subscription_succeeded") {
            ready.send(()).await.unwrap();
        } else if t.contains("\"event\":\"tick\"") {
            received += 1;
        } else if t.contains("\"event\":\"end\"") {
            break;
        }
    }
    done.send(received).await.unwrap();
}

/// A client that subscribes and then never reads, with a small receive buffer.
fn stalled_client(addr: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request("/app/app-key?protocol=7").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    let (_, established) = read_frame(&mut s).unwrap();
    assert!(String::from_utf8_lossy(&established).contains("connection_established"));
    s.write_all(&client_frame(
        true,
        1,
        br#"{"event":"pusher:subscribe","data":{"channel":"feed"}}"#,
        Some([1, 2, 3, 4]),
    ))
    .unwrap();
    let (_, ok) = read_frame(&mut s).unwrap();
    assert!(String::from_utf8_lossy(&ok).contains("subscription_succeeded"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_cut_and_the_others_lose_nothing() {
    // A small kernel send buffer, so the stall shows in corecast's queue and not in the kernel's
    // (loopback autotuning would otherwise absorb megabytes for one stalled socket).
    let server = Server::start(&[
        "--cores",
        "2",
        "--max-outbound-bytes",
        "65536",
        "--socket-send-buffer",
        "16384",
        // Long enough that the stalled client, reading late, still finds the error and close.
        "--close-timeout",
        "30",
    ]);
    let addr = server.addr();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        tokio::spawn(subscriber(server.url("/app/app-key?protocol=7"), done_tx.clone(), ready_tx.clone()));
    }
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await.unwrap().unwrap();
    }
    let mut stalled = stalled_client(&addr);
    let rss_before = rss_of(server.child.id());

    let data = "x".repeat(EVENT_BYTES);
    let publish_addr = addr.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..EVENTS {
            let (status, _) = publish(&publish_addr, &["feed"], "tick", &data);
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        }
        publish(&publish_addr, &["feed"], "end", "");
    })
    .await
    .unwrap();

    let mut counts = Vec::new();
    for _ in 0..SUBSCRIBERS {
        counts.push(tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await.unwrap().unwrap());
    }
    assert!(counts.iter().all(|&c| c == EVENTS), "some subscriber lost events: {:?}", &counts[..10]);
    let rss_after = rss_of(server.child.id());

    // The stalled client now reads: it finds far fewer events than were published, then the
    // server's 4100 error and close (or the connection already closed).
    let mut all = Vec::new();
    let _ = stalled.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let ticks = text.matches("\"event\":\"tick\"").count();
    assert!(ticks < EVENTS / 2, "the stalled client was not cut off ({ticks} events buffered)");
    assert!(
        text.contains(r#"{"event":"pusher:error","data":{"code":4100"#),
        "no 4100 error: …{}",
        &text[text.len().saturating_sub(300)..]
    );
    // The close frame follows the error: 0x88, length, then code 4100 (0x10 0x04).
    let close = all.windows(2).position(|w| w == [0x10, 0x04]);
    assert!(close.is_some_and(|p| p >= 2 && all[p - 2] == 0x88), "no close frame with code 4100");
    // Memory: the stalled connection's queue was bounded (64 KiB), so the server did not keep
    // the ~600 KB published to it; allow generous slack for allocator noise.
    assert!(rss_after < rss_before + 16 * 1024 * 1024, "server RSS grew from {rss_before} to {rss_after}");
}
