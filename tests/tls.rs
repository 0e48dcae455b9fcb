//! TLS on the main port (`--tls-cert`/`--tls-key`): WebSocket echo, the Pusher protocol and the
//! signed HTTP API over TLS 1.3 and 1.2, with and without ALPN; certificate reload on SIGHUP
//! with open connections kept; clients that do not speak TLS (or only h2) refused without
//! affecting anyone else; the metrics port staying plain.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::tls::{Pki, connect, https_exchange, leaf, wss};
use common::{Server, free_port, poll, signed_http, split_response};
use tungstenite::Message;

fn start(pki: &Pki, extra: &[&str]) -> Server {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut args = vec!["--cores", "2", "--echo", "--tls-cert", cert, "--tls-key", key];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn echo_roundtrip(ws: &mut tungstenite::WebSocket<common::tls::TlsStream>, msg: Message) {
    ws.send(msg.clone()).unwrap();
    assert_eq!(ws.read().unwrap(), msg);
}

#[test]
fn wss_echo_over_tls13_and_tls12_with_and_without_alpn() {
    let pki = Pki::new("echo");
    pki.issue("corecast echo");
    let server = start(&pki, &[]);
    assert!(server.log().contains("(TLS)"), "{}", server.log());
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for alpn in [&[&b"http/1.1"[..]][..], &[]] {
            let config = pki.client(&[version], alpn);
            let mut ws = wss(&server.addr(), config, "/echo");
            let conn = &ws.get_ref().conn;
            assert_eq!(conn.protocol_version(), Some(version.version));
            let want_alpn = if alpn.is_empty() { None } else { Some(&b"http/1.1"[..]) };
            assert_eq!(conn.alpn_protocol(), want_alpn);
            echo_roundtrip(&mut ws, Message::text("hello over TLS"));
            // Larger than a TLS record (16 KiB): several records each way.
            echo_roundtrip(&mut ws, Message::binary(big.clone()));
            ws.close(None).unwrap();
            loop {
                match ws.read() {
                    Ok(_) => continue,
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Err(e) => panic!("clean close expected ({version:?}): {e}"),
                }
            }
        }
    }
}

/// Reads Pusher messages until one with event `event`; returns its JSON.
fn pusher_event(ws: &mut tungstenite::WebSocket<common::tls::TlsStream>, event: &str) -> serde_json::Value {
    loop {
        let msg = ws.read().unwrap_or_else(|e| panic!("waiting for {event}: {e}"));
        let Message::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["event"] == event {
            return v;
        }
    }
}

#[test]
fn pusher_subscription_gets_an_event_published_through_the_https_api() {
    let pki = Pki::new("pusher");
    pki.issue("corecast pusher");
    let server = start(&pki, &[]);
    let mut ws = wss(&server.addr(), pki.default_client(), "/app/app-key?protocol=7&client=test&version=1");
    pusher_event(&mut ws, "pusher:connection_established");
    ws.send(Message::text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)).unwrap();
    pusher_event(&mut ws, "pusher_internal:subscription_succeeded");

    let body = serde_json::json!({"name": "flash", "channels": ["news"], "data": "{\"n\":1}"}).to_string();
    let req = signed_http("POST", "/apps/1/events", "", &body);
    let (status, reply) =
        split_response(&https_exchange(&server.addr(), pki.default_client(), req.as_bytes()));
    assert_eq!(status, "HTTP/1.1 200 OK", "{reply}");
    let got = pusher_event(&mut ws, "flash");
    assert_eq!((got["channel"].as_str(), got["data"].as_str()), (Some("news"), Some("{\"n\":1}")));

    // A signed read over HTTPS too; and an unsigned one is refused (the API is not open over TLS).
    let req = signed_http("GET", "/apps/1/channels/news", "info=subscription_count", "");
    let (status, reply) =
        split_response(&https_exchange(&server.addr(), pki.default_client(), req.as_bytes()));
    assert_eq!(status, "HTTP/1.1 200 OK", "{reply}");
    assert!(reply.contains("\"subscription_count\":1"), "{reply}");
    let unsigned = b"GET /apps/1/channels HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (status, _) = split_response(&https_exchange(&server.addr(), pki.default_client(), unsigned));
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let pki = Pki::new("reload");
    let first = pki.issue("corecast first");
    let server = start(&pki, &[]);
    let mut old = wss(&server.addr(), pki.default_client(), "/echo");
    assert_eq!(leaf(old.get_ref()), first);

    let second = pki.issue("corecast second");
    assert_ne!(first, second);
    server.signal(1); // SIGHUP
    poll(
        "a new connection to present the reloaded certificate",
        Duration::from_secs(10),
        || (leaf(&connect(&server.addr(), pki.default_client()).unwrap()) == second).then_some(()),
        || server.log(),
    );
    assert!(server.log().contains("reloaded TLS certificate"), "{}", server.log());
    echo_roundtrip(&mut old, Message::text("still here after the reload"));
    let mut new = wss(&server.addr(), pki.default_client(), "/echo");
    echo_roundtrip(&mut new, Message::text("new connection"));

    // A broken key file: the reload fails, says so, and the previous certificate stays in use.
    common::tls::write_atomically(
        &pki.key,
        b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    server.signal(1);
    poll(
        "the failed reload to be logged",
        Duration::from_secs(10),
        || server.log().contains("TLS reload failed").then_some(()),
        || server.log(),
    );
    assert!(server.log().contains("keeping the previous certificate"), "{}", server.log());
    assert_eq!(leaf(&connect(&server.addr(), pki.default_client()).unwrap()), second);
    echo_roundtrip(&mut old, Message::text("and after a failed one"));
    echo_roundtrip(&mut new, Message::text("this one too"));
}

#[test]
fn plain_http_and_h2_only_clients_are_refused_without_affecting_others() {
    let pki = Pki::new("refuse");
    pki.issue("corecast refuse");
    let metrics_port = free_port().to_string();
    let server = start(&pki, &["--metrics-port", &metrics_port]);
    let mut ws = wss(&server.addr(), pki.default_client(), "/echo");

    // Plain HTTP on the TLS port: a TLS alert (decode_error) and the connection is closed.
    let mut tcp = std::net::TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).expect("the server closes the connection");
    assert_eq!(reply.first(), Some(&0x15), "a TLS alert record, not HTTP: {reply:?}");
    assert!(!String::from_utf8_lossy(&reply).contains("HTTP/1.1"));

    // A client offering only h2: refused with no_application_protocol (RFC 7301).
    let h2 = pki.client(&[&rustls::version::TLS13], &[b"h2"]);
    let err = connect(&server.addr(), h2).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

    // Everyone else is unaffected: the open connection, new TLS clients, the plain metrics port.
    echo_roundtrip(&mut ws, Message::text("unaffected"));
    let health =
        https_exchange(&server.addr(), pki.default_client(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8_lossy(&health).starts_with("HTTP/1.1 200"), "{health:?}");
    let metrics = common::scrape(&format!("127.0.0.1:{metrics_port}"));
    assert!(metrics.contains("corecast_"), "the metrics port serves plain HTTP");
}
