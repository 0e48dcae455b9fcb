//! Subscribers that stop reading are cut off at their output bound (pusher:error 4100, close
//! 4100) while a thousand others keep receiving everything, and the server holds no more for
//! them than the bound allows: what each stalled reader finally reads is what the kernel
//! buffers held, and the server's RSS grows by at most the bound per stalled reader, though
//! ~19 MB were published to them.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SUBSCRIBERS: usize = 1000;
const EVENTS: usize = 300;
const EVENT_BYTES: usize = 2000;
/// Stalled readers, each on `feed` and on a channel of its own (`stall-{i}`), to which
/// STALL_EVENTS events of STALL_EVENT_BYTES are published: frames no one else shares, so a
/// queue that kept them would show in the server's memory.
const STALLED: usize = 8;
const STALL_EVENTS: usize = 300;
const STALL_EVENT_BYTES: usize = 8000;

/// The server's settings, and the stalled clients' receive buffer.
const MAX_OUTBOUND: usize = 65536;
const SEND_BUFFER: usize = 16384;
const RECV_BUFFER: usize = 4096;
/// The largest frame published (a `stall-{i}` event with its JSON envelope).
const FRAME: usize = STALL_EVENT_BYTES + 100;

/// What the server may legitimately hold for one stalled reader: its queue up to the bound,
/// plus the frame that crossed it (handled in the same turn: the unsent frames are then
/// dropped, leaving at most a partly written one and the goodbye).
const HELD_PER_READER: usize = MAX_OUTBOUND + FRAME;
/// What one stalled reader can find once it reads again: what the kernel took before the stall
/// (the server's send buffer and the reader's receive buffer, each doubled by Linux for its
/// bookkeeping), plus the rest of a partly written frame. Everything queued is dropped at the
/// cut; an unbounded queue would hand over all 2.4 MB published to it.
const READABLE_PER_READER: usize = 2 * SEND_BUFFER + 2 * RECV_BUFFER + FRAME;
/// RSS growth from everything else during the run (the 1000 subscribers' transient queues,
/// 600 HTTP requests, allocator slack). The whole growth measured 548-620 KiB on this machine
/// type, about the 8 × 72 KiB the stalled readers may hold; a queue that kept what was
/// published to them would add ~19 MB.
const RSS_SLACK: usize = 2 * 1024 * 1024;

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

/// A client that subscribes to `feed` and `stall-{i}` and then never reads, with a small
/// receive buffer.
fn stalled_client(addr: &str, i: usize) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(RECV_BUFFER).unwrap();
    sock.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request("/app/app-key?protocol=7").as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    let (_, established) = read_frame(&mut s).unwrap();
    assert!(String::from_utf8_lossy(&established).contains("connection_established"));
    for channel in ["feed".to_string(), format!("stall-{i}")] {
        let sub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        s.write_all(&client_frame(true, 1, sub.as_bytes(), Some([1, 2, 3, 4]))).unwrap();
        let (_, ok) = read_frame(&mut s).unwrap();
        assert!(String::from_utf8_lossy(&ok).contains("subscription_succeeded"));
    }
    s
}

/// What a stalled client reads once it reads again, up to the server's close frame: (bytes of
/// event frames, the pusher:error before the close, the close code).
fn read_the_rest(s: &mut TcpStream) -> (usize, Option<String>, Option<u16>) {
    let (mut event_bytes, mut error) = (0, None);
    while let Some((op, payload)) = read_frame(s) {
        match op {
            8 => return (event_bytes, error, payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
            _ if payload.starts_with(br#"{"event":"pusher:error""#) => {
                error = Some(String::from_utf8_lossy(&payload).into_owned())
            }
            _ => event_bytes += payload.len() + 4,
        }
    }
    (event_bytes, error, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscribers_are_cut_at_their_bound_and_the_others_lose_nothing() {
    // A small kernel send buffer, so the stall shows in corecast's queue and not in the kernel's
    // (loopback autotuning would otherwise absorb megabytes for one stalled socket).
    let server = Server::start(&[
        "--cores",
        "2",
        "--max-outbound-bytes",
        &MAX_OUTBOUND.to_string(),
        "--socket-send-buffer",
        &SEND_BUFFER.to_string(),
        // Long enough that the stalled clients, reading late, still find the error and close.
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
    let mut stalled: Vec<TcpStream> = (0..STALLED).map(|i| stalled_client(&addr, i)).collect();
    let rss_before = rss_of(server.child.id());

    let publish_addr = addr.clone();
    tokio::task::spawn_blocking(move || {
        // Each request publishes one frame per stalled reader, to it alone.
        let stall: Vec<String> = (0..STALLED).map(|i| format!("stall-{i}")).collect();
        let stall: Vec<&str> = stall.iter().map(|s| s.as_str()).collect();
        let big = "s".repeat(STALL_EVENT_BYTES);
        for _ in 0..STALL_EVENTS {
            let (status, _) = publish(&publish_addr, &stall, "stall", &big);
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        }
        let data = "x".repeat(EVENT_BYTES);
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
    let scrape = scrape(&addr);

    // Memory: at most the bound per stalled reader, though ~19 MB were published to them.
    let grew = rss_after.saturating_sub(rss_before) as usize;
    let allowed = STALLED * HELD_PER_READER + RSS_SLACK;
    eprintln!("server RSS grew {} KiB (allowed {} KiB)", grew / 1024, allowed / 1024);
    assert!(
        grew <= allowed,
        "server RSS grew by {grew} bytes from {rss_before}: over {STALLED} × {HELD_PER_READER} held per stalled \
         reader + {RSS_SLACK} slack"
    );

    // The stalled clients now read: what the kernel held, then the 4100 error and close.
    let mut read = Vec::new();
    for (i, s) in stalled.iter_mut().enumerate() {
        let (event_bytes, error, close) = read_the_rest(s);
        read.push(event_bytes);
        assert!(
            event_bytes <= READABLE_PER_READER,
            "stalled reader {i} read {event_bytes} bytes of events: more than the kernel buffers and a frame \
             ({READABLE_PER_READER}), so the server kept queueing for it"
        );
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with(r#"{"event":"pusher:error","data":{"code":4100"#),
            "stalled reader {i}: {error:?}"
        );
        assert_eq!(close, Some(4100), "stalled reader {i}: the close frame follows the error");
    }
    eprintln!("stalled readers read {read:?} bytes of events (allowed {READABLE_PER_READER} each)");
    assert_eq!(metric(&scrape, "corecast_slow_consumer_disconnects_total"), Some(STALLED as f64), "{scrape}");
}
