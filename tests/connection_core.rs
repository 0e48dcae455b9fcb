//! The connection core against the real binary: HTTP paths and limits, RFC 6455 failures with
//! their close codes, admission, heartbeats and graceful drain.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const M: Option<[u8; 4]> = Some([9, 8, 7, 6]);

fn status_of(response: &[u8]) -> String {
    String::from_utf8_lossy(response).lines().next().unwrap_or("").to_string()
}

#[test]
fn http_paths_answer_with_the_documented_statuses() {
    let server = Server::start(&["--echo"]);
    let a = server.addr();
    let t = Duration::from_secs(5);
    let ok = raw_exchange(&a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&ok), "HTTP/1.1 200 OK");
    assert!(ok.ends_with(b"\r\n\r\nOK\n"));
    let ready = raw_exchange(&a, b"GET /ready HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&ready), "HTTP/1.1 200 OK");
    let missing = raw_exchange(&a, b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&missing), "HTTP/1.1 404 Not Found");
    let garbage = raw_exchange(&a, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", t);
    assert_eq!(status_of(&garbage), "HTTP/1.1 400 Bad Request");
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let too_large = raw_exchange(&a, big.as_bytes(), t);
    assert_eq!(status_of(&too_large), "HTTP/1.1 431 Request Header Fields Too Large");
    let plain = raw_exchange(&a, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", t);
    let plain = String::from_utf8_lossy(&plain);
    assert!(
        plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n")
            && plain.contains("\r\nUpgrade: websocket\r\n")
    );
    let v8 = upgrade_request("/echo").replace("Version: 13", "Version: 8");
    let v8 = raw_exchange(&a, v8.as_bytes(), t);
    let v8 = String::from_utf8_lossy(&v8);
    assert!(v8.starts_with("HTTP/1.1 426 ") && v8.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{v8}");
}

#[test]
fn echo_is_off_unless_enabled() {
    let server = Server::start(&[]);
    let resp = raw_exchange(&server.addr(), upgrade_request("/echo").as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&resp), "HTTP/1.1 404 Not Found");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let mut body = [0u8; 3];
        s.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"OK\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_tungstenite_client_echo_on_both_cores() {
    let server = Server::start(&["--echo", "--cores", "2"]);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (ws, resp) = tokio_tungstenite::connect_async(server.url("/echo")).await.unwrap();
        assert_eq!(resp.status(), 101);
        clients.push(ws);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("héllo {i}"))).await.unwrap();
        ws.send(Message::binary(vec![i as u8; 70_000 / 2])).await.unwrap();
        ws.send(Message::Ping(vec![1, 2, 3].into())).await.unwrap();
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < 3 {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => got.push(format!("text:{t}")),
                Message::Binary(b) => got.push(format!("binary:{}:{}", b.len(), b[0])),
                Message::Pong(p) => got.push(format!("pong:{p:?}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            got,
            vec![format!("text:héllo {i}"), format!("binary:35000:{i}"), "pong:b\"\\x01\\x02\\x03\"".into()]
        );
    }
    for mut ws in clients {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
}

#[test]
fn oversize_message_is_closed_with_1009() {
    let server = Server::start(&["--echo", "--max-message-size", "1000", "--max-frame-size", "1000"]);
    let mut s = raw_ws(&server.addr(), "/echo");
    s.write_all(&client_frame(false, 2, &[0; 600], M)).unwrap();
    s.write_all(&client_frame(true, 0, &[0; 600], M)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
}

#[test]
fn invalid_utf8_is_closed_with_1007() {
    let server = Server::start(&["--echo"]);
    let mut s = raw_ws(&server.addr(), "/echo");
    s.write_all(&client_frame(true, 1, b"ok \xff\xfe", M)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1007));
}

#[test]
fn unmasked_frame_is_closed_with_1002() {
    let server = Server::start(&["--echo"]);
    let mut s = raw_ws(&server.addr(), "/echo");
    s.write_all(&client_frame(true, 1, b"hello", None)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1002));
    // ...and the server closes the TCP connection afterwards.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
}

#[test]
fn full_server_refuses_upgrades_with_503() {
    let server = Server::start(&["--echo", "--cores", "1", "--max-connections", "2"]);
    let _a = raw_ws(&server.addr(), "/echo");
    let _b = raw_ws(&server.addr(), "/echo");
    let refused = raw_exchange(&server.addr(), upgrade_request("/echo").as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&refused), "HTTP/1.1 503 Service Unavailable");
    // Plain HTTP is still served when WebSockets are full.
    let ok =
        raw_exchange(&server.addr(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", Duration::from_secs(5));
    assert_eq!(status_of(&ok), "HTTP/1.1 200 OK");
}

#[test]
fn slowloris_is_cut_at_the_handshake_timeout() {
    let server = Server::start(&["--handshake-timeout", "2"]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let start = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: yes";
    let mut closed_at = None;
    for byte in request.iter().cycle() {
        if s.write_all(&[*byte]).is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 16];
        if let Ok(0) = s.read(&mut buf) {
            closed_at = Some(start.elapsed());
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let closed_at = closed_at.expect("the server closed the trickling connection");
    assert!(closed_at >= Duration::from_millis(1500), "closed too early: {closed_at:?}");
    assert!(closed_at <= Duration::from_secs(5), "closed too late: {closed_at:?}");
}

#[test]
fn dead_peer_is_detected_by_the_heartbeat() {
    let server = Server::start(&["--echo", "--activity-timeout", "1", "--pong-timeout", "1"]);
    // A peer that completed the handshake and then went silent: it never answers pings.
    let mut s = raw_ws(&server.addr(), "/echo");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let start = Instant::now();
    let (op, _) = read_frame(&mut s).expect("a ping");
    assert_eq!(op, 9, "the server pings an idle peer");
    // Not answering: the server gives up and closes.
    assert_eq!(read_close_code(&mut s), Some(1001));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    assert!(start.elapsed() < Duration::from_secs(7));
}

/// Regression: after a failed heartbeat the close timeout was never armed, so a peer that is
/// gone without closing (here: one that never reads or writes again) was kept for good.
#[test]
fn dead_peer_is_dropped_at_the_close_timeout_after_the_heartbeat() {
    let server = Server::start(&["--activity-timeout", "1", "--pong-timeout", "1", "--close-timeout", "1"]);
    let silent = raw_ws(&server.addr(), "/app/app-key?protocol=7");
    // ping after 1-2 s, pong deadline 1-2 s later, close timeout 1-2 s: gone within 6 s.
    let open = || metric(&scrape(&server.addr()), "corecast_connections");
    poll(
        "the dead peer to be dropped",
        Duration::from_secs(8),
        || (open() == Some(1.0)).then_some(()),
        || format!("corecast_connections {:?}", open()),
    );
    let s = scrape(&server.addr());
    assert_eq!(metric(&s, "corecast_ping_timeouts_total"), Some(1.0), "{s}");
    drop(silent);
}

#[tokio::test]
async fn live_peer_answering_pings_is_kept() {
    let server = Server::start(&["--echo", "--activity-timeout", "1", "--pong-timeout", "1"]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url("/echo")).await.unwrap();
    // tungstenite answers pings while we poll. An unanswered ping closes the connection within
    // the pong timeout, so a third ping shows that the first two were answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("after {pings} pings: {other:?}"),
        }
    }
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("still here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_client_with_1001_and_exits_0() {
    let mut server = Server::start(&["--echo", "--cores", "2", "--drain-timeout", "10"]);
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(tokio_tungstenite::connect_async(server.url("/echo")).await.unwrap().0);
    }
    // An HTTP client that started a request before the signal is answered 503 on /ready.
    let mut http = TcpStream::connect(server.addr()).unwrap();
    http.write_all(b"GET /ready HTTP/1.1\r\n").unwrap();
    // Signal once the server holds it: 20 WebSockets, it, and the scrape asking.
    let open = || metric(&scrape(&server.addr()), "corecast_connections");
    poll(
        "the half-sent request to be accepted",
        Duration::from_secs(5),
        || (open() == Some(22.0)).then_some(()),
        || format!("corecast_connections {:?}", open()),
    );
    let start = Instant::now();
    server.signal(15);
    let mut codes = Vec::new();
    for ws in &mut clients {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => codes.push(frame.code),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    assert!(codes.iter().all(|c| *c == CloseCode::Away), "{codes:?}");
    http.write_all(b"Host: x\r\n\r\n").unwrap();
    http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(read_head(&mut http).starts_with("HTTP/1.1 503 "));
    // tungstenite queued its answer to each close; flushing sends it. The server exits once all
    // are closed, long before the drain timeout.
    for ws in &mut clients {
        let _ = ws.flush().await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
    }
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the drain took {:?} (--drain-timeout 10)",
        start.elapsed()
    );
    // New connections are refused once drained.
    assert!(TcpStream::connect(server.addr()).is_err());
}

/// Regression: after a close handshake the server had started, it waited for the peer to close
/// TCP as well (up to --close-timeout, or --drain-timeout while draining), so a drain took its
/// full timeout with clients that answer the close and keep their socket (tokio-tungstenite).
#[test]
fn server_closes_tcp_once_its_close_handshake_completes() {
    // A Pusher client with an unsupported protocol is closed with 4007; it answers the close.
    let server = Server::start(&["--close-timeout", "30"]);
    let mut s = raw_ws(&server.addr(), "/app/app-key?protocol=3");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_close_code(&mut s), Some(4007));
    let start = Instant::now();
    s.write_all(&client_frame(true, 8, &4007u16.to_be_bytes(), M)).unwrap();
    let mut rest = Vec::new();
    assert!(matches!(s.read_to_end(&mut rest), Ok(0)), "the server closes the TCP connection: {rest:?}");
    // ...and lets go of it (only the scrape asking is left), though this peer keeps its socket.
    let open = || metric(&scrape(&server.addr()), "corecast_connections");
    poll(
        "the server to drop the connection",
        Duration::from_secs(3),
        || (open() == Some(1.0)).then_some(()),
        || format!("corecast_connections {:?} after {:?} (--close-timeout 30)", open(), start.elapsed()),
    );
    // The drain's close, answered: the process exits at once.
    let mut server = Server::start(&["--echo", "--drain-timeout", "30"]);
    let mut s = raw_ws(&server.addr(), "/echo");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    server.signal(15);
    assert_eq!(read_close_code(&mut s), Some(1001));
    s.write_all(&client_frame(true, 8, &1001u16.to_be_bytes(), M)).unwrap();
    assert!(matches!(s.read_to_end(&mut rest), Ok(0)), "the server closes the TCP connection: {rest:?}");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits once the close is answered");
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the drain took {:?} (--drain-timeout 30)",
        start.elapsed()
    );
    drop(s);
}

#[test]
fn drain_timeout_bounds_the_wait_for_silent_peers() {
    let mut server = Server::start(&["--echo", "--drain-timeout", "2"]);
    // Raw sockets that never answer the close frame.
    let socks: Vec<TcpStream> = (0..5).map(|_| raw_ws(&server.addr(), "/echo")).collect();
    let start = Instant::now();
    server.signal(2);
    let status = server.wait_exit(Duration::from_secs(8)).expect("exits at the drain timeout");
    assert_eq!(status.code(), Some(0));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "{took:?}");
    drop(socks);
}

/// Regression (63-node runs of benches/million.sh): now and then one or two nodes never woke
/// from waiting for signals on glommio's blocking pool and ignored SIGTERM; signals are now
/// polled on the control executor. That hang was intermittent, so this test — many nodes on one
/// port signalled by one `kill`, twice — catches it with some probability, not every time.
#[test]
fn regression_every_one_of_many_nodes_exits_on_one_sigterm() {
    const NODES: usize = 24;
    for round in 1..=2 {
        let port = free_port();
        let args = ["--cores", "1", "--share-port", "--max-connections", "1000", "--drain-timeout", "2"];
        let mut nodes: Vec<Server> = (0..NODES).map(|_| Server::start_on(port, &args, &[])).collect();
        let mut kill = Command::new("kill");
        kill.arg("-15").args(nodes.iter().map(|n| n.child.id().to_string()));
        assert!(kill.status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, node) in nodes.iter_mut().enumerate() {
            let status = node.wait_exit(deadline.saturating_duration_since(Instant::now()));
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "round {round}: node {i} of {NODES} did not exit within 10 s of SIGTERM ({status:?}):\n{}",
                node.log()
            );
        }
    }
}

#[test]
fn second_signal_exits_at_once_with_status_1() {
    let mut server = Server::start(&["--echo", "--drain-timeout", "30"]);
    // A peer that never answers the close frame: the drain would wait the full 30 s for it.
    let _s = raw_ws(&server.addr(), "/echo");
    server.signal(15);
    // The second signal must come after the first was taken (two pending ones are one).
    poll(
        "the first signal to start the drain",
        Duration::from_secs(5),
        || server.log().contains("received SIGTERM: draining").then_some(()),
        || server.log(),
    );
    let start = Instant::now();
    server.signal(15);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits at once on the second signal");
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(server.log().contains("received SIGTERM again: exiting without draining"), "{}", server.log());
}

#[test]
fn metrics_port_serves_only_metrics() {
    let port = free_port();
    let server = Server::start(&["--metrics-port", &port.to_string()]);
    let metrics = format!("127.0.0.1:{port}");
    let t = Duration::from_secs(5);
    let resp = raw_exchange(&metrics, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.contains("corecast_websocket_connections_all"),
        "{text}"
    );
    let resp = raw_exchange(&metrics, b"GET /apps/1/channels HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&resp), "HTTP/1.1 404 Not Found");
    // The main port serves /metrics too.
    let resp = raw_exchange(&server.addr(), b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&resp), "HTTP/1.1 200 OK");
}

/// Several processes on one port (the multi-node-per-box shape): with --share-port both listen
/// and the kernel spreads connections over them; without it the second refuses to start.
#[test]
fn share_port_lets_processes_listen_on_one_port() {
    let port = free_port();
    let (m1, m2) = (free_port(), free_port());
    let a = Server::start_on(port, &["--cores", "1", "--share-port", "--metrics-port", &m1.to_string()], &[]);
    let b = Server::start_on(port, &["--cores", "1", "--share-port", "--metrics-port", &m2.to_string()], &[]);
    assert_eq!(a.port, b.port);
    let conns: Vec<_> = (0..64).map(|_| raw_ws(&a.addr(), "/app/app-key?protocol=7")).collect();
    let websockets = |m: u16| -> u64 {
        let text = String::from_utf8_lossy(&raw_exchange(
            &format!("127.0.0.1:{m}"),
            b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        ))
        .into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("corecast_websocket_connections_all "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (na, nb) = loop {
        let (na, nb) = (websockets(m1), websockets(m2));
        if na + nb == 64 || std::time::Instant::now() > deadline {
            break (na, nb);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(na + nb, 64, "every connection landed on one of the two");
    assert!(na > 0 && nb > 0, "both processes took connections: {na} and {nb}");
    drop(conns);
    // Without --share-port a second process on a taken port refuses, naming the problem.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
