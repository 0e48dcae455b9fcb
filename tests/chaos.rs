//! A bounded chaos run against the real binary on two cores: many raw-TCP clients misbehave at
//! once (resets mid-handshake and mid-frame, half-open and half-closed sockets, slowloris heads
//! and bodies, oversized and malformed frames, bad UTF-8, subscribe/unsubscribe and presence
//! join/leave storms, client-event floods, stalled readers, HTTP API requests abandoned
//! mid-answer) while well-behaved pusher-js clients (tests/clients/pusher/chaos_steady.js)
//! receive numbered events published over the HTTP API. Afterwards the well-behaved clients lost
//! nothing and saw every channel in order; protocol violations got their close codes; `/metrics`
//! shows no connection, presence member, channel or queued byte left, with the half-open sockets
//! still held open by this test (the server reaped them itself); and the server's RSS is back
//! within a small bound of its baseline after a warm-up round of the same chaos.
//!
//! Short timeouts make the server reap within the run: --handshake-timeout 2 (slowloris),
//! --activity-timeout 2 + --pong-timeout 3 (silent peers), --close-timeout 1 (peers that never
//! answer a close frame). Everything stops itself: every phase has a deadline.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Well-behaved pusher-js clients, and the public channels they spread over.
const GOOD: usize = 12;
const FEEDS: usize = 4;
/// The warm-up round (the RSS baseline is taken after it settles) and the main round.
const WARM_UP: Duration = Duration::from_secs(4);
const CHAOS: Duration = Duration::from_secs(18);
/// The longest the server may take to drop a misbehaving connection after the chaos stops:
/// activity 2 s + pong 3 s + close 1 s, each rounded up by the one-second timer wheel, and slack
/// for a loaded machine.
const REAP: Duration = Duration::from_secs(12);
/// Events per second per channel from the publisher.
const RATE: u64 = 40;
/// How far the server's RSS may end above its baseline (taken after the warm-up round, with
/// only the well-behaved clients connected). Measured on this machine type: 552-572 KiB above
/// it after the 18 s round (~21,000 misbehaving connections), about 25 bytes per connection,
/// the allocator's working set settling (300 KiB after 6 s, 790 KiB after 40 s). 2 MiB fails a
/// leak of ~100 bytes per misbehaving connection, or any queue, message or presence state kept
/// for the dead ones (each is hundreds of bytes to kilobytes).
const RSS_BOUND: u64 = 2 * 1024 * 1024;
/// Rounds one misbehaving worker may do (besides the time limit).
const MAX_ROUNDS: u64 = 20_000;

const PATH: &str = "/app/app-key?protocol=7&client=chaos&version=1";

/// What the misbehaving clients did and what the server answered that it should not have.
#[derive(Default)]
struct Tally {
    runs: Mutex<BTreeMap<&'static str, u64>>,
    wrong: Mutex<Vec<String>>,
    /// Sockets kept open (never read, never closed) until the end: the server must drop them.
    held: Mutex<Vec<TcpStream>>,
    next_ip: AtomicU64,
}

impl Tally {
    fn ran(&self, kind: &'static str) {
        *self.runs.lock().unwrap().entry(kind).or_default() += 1;
    }
    fn wrong(&self, what: String) {
        self.wrong.lock().unwrap().push(what);
    }
}

struct Ctx {
    addr: SocketAddr,
    tally: Tally,
}

type Res<T> = Result<T, String>;

/// A TCP connection from 127.0.0.11-18 (the port chosen at connect time).
async fn connect(ctx: &Ctx, recv_buffer: Option<u32>) -> Res<TcpStream> {
    let n = ctx.tally.next_ip.fetch_add(1, Ordering::Relaxed);
    let ip = Ipv4Addr::new(127, 0, 0, 11 + (n % 8) as u8);
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
        .map_err(|e| e.to_string())?;
    if let Some(size) = recv_buffer {
        sock.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
    }
    sock.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| e.to_string())?;
    sock.connect(ctx.addr).await.map_err(|e| format!("connect: {e}"))
}

/// Closes with a TCP reset (SO_LINGER 0).
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    corecast::protocol::frame::encode_client(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d])
}

fn text(payload: &str) -> Vec<u8> {
    masked(true, 1, payload.as_bytes())
}

/// Reads one server frame: (opcode, payload).
async fn read_frame(s: &mut TcpStream) -> Res<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.map_err(|e| format!("read: {e}"))?;
    let len = match h[1] & 0x7f {
        126 => u64::from(s.read_u16().await.map_err(|e| e.to_string())?),
        127 => s.read_u64().await.map_err(|e| e.to_string())?,
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Err(format!("a {len}-byte frame from the server"));
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await.map_err(|e| format!("read: {e}"))?;
    Ok((h[0] & 0x0f, payload))
}

/// Reads frames until a close frame; its code (1005 without one).
async fn close_code(s: &mut TcpStream) -> Res<u16> {
    loop {
        let (op, payload) = read_frame(s).await?;
        if op == 8 {
            return Ok(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 });
        }
    }
}

/// Reads one HTTP response head.
async fn read_head(s: &mut TcpStream) -> Res<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = s.read_u8().await.map_err(|e| format!("head: {e}"))?;
        head.push(b);
        if head.len() > 8192 {
            return Err("a head over 8 KiB".into());
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A Pusher WebSocket after connection_established: (stream, socket_id).
async fn pusher(ctx: &Ctx, recv_buffer: Option<u32>) -> Res<(TcpStream, String)> {
    let mut s = connect(ctx, recv_buffer).await?;
    s.write_all(upgrade_request(PATH).as_bytes()).await.map_err(|e| e.to_string())?;
    let head = read_head(&mut s).await?;
    if !head.starts_with("HTTP/1.1 101 ") {
        return Err(format!("upgrade answered {}", head.lines().next().unwrap_or("")));
    }
    let (_, payload) = read_frame(&mut s).await?;
    let msg: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    let data: serde_json::Value =
        serde_json::from_str(msg["data"].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
    let id = data["socket_id"].as_str().ok_or_else(|| format!("no socket_id in {msg}"))?.to_string();
    Ok((s, id))
}

/// A pusher:subscribe message, signed for private and presence channels.
fn subscribe(socket_id: &str, channel: &str, user: Option<&str>) -> Vec<u8> {
    let mut data = serde_json::json!({ "channel": channel });
    if channel.starts_with("private-") || channel.starts_with("presence-") {
        let channel_data =
            user.map(|u| serde_json::json!({"user_id": u, "user_info": {"chaos": true}}).to_string());
        let mut parts: Vec<&[u8]> = vec![socket_id.as_bytes(), b":", channel.as_bytes()];
        if let Some(cd) = &channel_data {
            parts.extend([b":".as_slice(), cd.as_bytes()]);
        }
        data["auth"] = format!("app-key:{}", corecast::pusher::auth::sign("app-secret", &parts)).into();
        if let Some(cd) = channel_data {
            data["channel_data"] = cd.into();
        }
    }
    text(&serde_json::json!({"event": "pusher:subscribe", "data": data}).to_string())
}

fn unsubscribe(channel: &str) -> Vec<u8> {
    text(&serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}).to_string())
}

async fn send(s: &mut TcpStream, bytes: &[u8]) -> Res<()> {
    s.write_all(bytes).await.map_err(|e| format!("write: {e}"))
}

/// Expects the server to fail the connection with one of `codes` after `bytes`.
async fn expect_close(ctx: &Ctx, kind: &str, bytes: &[u8], codes: &[u16]) -> Res<()> {
    let (mut s, _) = pusher(ctx, None).await?;
    send(&mut s, bytes).await?;
    match tokio::time::timeout(Duration::from_secs(10), close_code(&mut s)).await {
        Ok(Ok(got)) if codes.contains(&got) => Ok(()),
        Ok(Ok(got)) => Err(format!("{kind}: close {got}, not {codes:?}")),
        Ok(Err(e)) => Err(format!("{kind}: no close frame {codes:?} ({e})")),
        Err(_) => Err(format!("{kind}: no close frame {codes:?} within 10 s")),
    }
}

fn signed(method: &str, path: &str, query: &str, body: &str) -> String {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut params =
        vec!["auth_key=app-key".to_string(), format!("auth_timestamp={ts}"), "auth_version=1.0".into()];
    if !body.is_empty() {
        params.push(format!("body_md5={:x}", md5::compute(body)));
    }
    params.extend(query.split('&').filter(|p| !p.is_empty()).map(String::from));
    params.sort();
    let q = params.join("&");
    let sig = corecast::pusher::auth::sign("app-secret", &[format!("{method}\n{path}\n{q}").as_bytes()]);
    format!(
        "{method} {path}?{q}&auth_signature={sig} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One misbehaviour; `i` varies it. Err: the server answered what it should not have.
async fn misbehave(ctx: &Ctx, kind: &'static str, i: u64) -> Res<()> {
    let feed = format!("feed-{}", i % FEEDS as u64);
    match kind {
        "reset-mid-handshake" => {
            let mut s = connect(ctx, None).await?;
            let req = upgrade_request(PATH);
            let cut = 1 + (i as usize * 7) % (req.len() - 1);
            send(&mut s, &req.as_bytes()[..cut]).await?;
            reset(s);
        }
        "reset-with-upgrade-in-flight" => {
            let mut s = connect(ctx, None).await?;
            let mut bytes = upgrade_request(PATH).into_bytes();
            bytes.extend(text(r#"{"event":"pusher:subscribe","data":{"channel":"feed-0"}}"#));
            send(&mut s, &bytes).await?;
            reset(s);
        }
        "reset-mid-frame" => {
            let (mut s, id) = pusher(ctx, None).await?;
            send(&mut s, &subscribe(&id, &feed, None)).await?;
            send(&mut s, &subscribe(&id, "presence-chaos", Some(&format!("chaos-r{}", i % 5)))).await?;
            let frame = text(&format!(
                r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
                "y".repeat(900)
            ));
            send(&mut s, &frame[..frame.len() / (2 + i as usize % 3)]).await?;
            reset(s);
        }
        "half-open" => {
            // Subscribed to the busy channels, then silent: never reads (a tiny receive
            // buffer, so the server's writes block as with a vanished peer), never writes.
            let (mut s, id) = pusher(ctx, Some(2048)).await?;
            for k in 0..FEEDS {
                send(&mut s, &subscribe(&id, &format!("feed-{k}"), None)).await?;
            }
            send(&mut s, &subscribe(&id, "presence-chaos", Some(&format!("chaos-h{i}")))).await?;
            ctx.tally.held.lock().unwrap().push(s);
        }
        "half-closed" => {
            // Sends its FIN after joining, and keeps the socket without reading.
            let (mut s, id) = pusher(ctx, None).await?;
            send(&mut s, &subscribe(&id, "presence-chaos", Some(&format!("chaos-f{}", i % 4)))).await?;
            s.shutdown().await.map_err(|e| e.to_string())?;
            ctx.tally.held.lock().unwrap().push(s);
        }
        "slowloris-head" | "slowloris-body" => {
            let mut s = connect(ctx, None).await?;
            let start = Instant::now();
            let request = if kind == "slowloris-head" {
                "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: "
                    .to_string()
                    + &"z".repeat(200)
            } else {
                signed(
                    "POST",
                    "/apps/1/events",
                    "",
                    &format!(r#"{{"name":"e","channel":"slow","data":"{}"}}"#, "b".repeat(300)),
                )
            };
            let bytes = request.as_bytes();
            // The body variant sends its whole head at once, then trickles the body.
            let head = if kind == "slowloris-body" { bytes.len() - 300 } else { 0 };
            send(&mut s, &bytes[..head]).await?;
            let mut buf = [0u8; 512];
            for b in &bytes[head..] {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
                if start.elapsed() > Duration::from_secs(8) {
                    return Err(format!("{kind}: still open after 8 s (--handshake-timeout 2)"));
                }
            }
            let took = start.elapsed();
            if took > Duration::from_secs(5) {
                return Err(format!("{kind}: cut after {took:?} (--handshake-timeout 2)"));
            }
        }
        "oversized-frame" => {
            // A frame header over --max-frame-size (65536): 70,000 or 2^40 bytes announced.
            let mut frame = vec![0x81, 0x80 | 127];
            let len: u64 = if i.is_multiple_of(2) { 70_000 } else { 1 << 40 };
            frame.extend(len.to_be_bytes());
            frame.extend([1, 2, 3, 4]);
            frame.extend(vec![b'a'; 1000]);
            expect_close(ctx, kind, &frame, &[1009]).await?;
        }
        "fragments-over-the-limit" => {
            // Fragments summing past --max-message-size.
            let mut bytes = masked(false, 1, &[b'a'; 40_000]);
            bytes.extend(masked(false, 0, &[b'b'; 40_000]));
            expect_close(ctx, kind, &bytes, &[1009]).await?;
        }
        "malformed-frame" => {
            let bytes: Vec<u8> = match i % 8 {
                0 => vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], // unmasked
                1 => {
                    let mut f = text("{}");
                    f[0] |= 0x40; // RSV1 without an extension
                    f
                }
                2 => masked(true, 3, b"x"),        // reserved opcode
                3 => masked(false, 9, b"p"),       // fragmented ping
                4 => masked(true, 9, &[0u8; 126]), // control payload over 125
                5 => masked(true, 0, b"orphan"),   // continuation without a start
                6 => [masked(false, 1, b"a"), text("b")].concat(), // new message inside one
                _ => masked(true, 8, &[0x03]),     // one-byte close payload
            };
            expect_close(ctx, kind, &bytes, &[1002]).await?;
        }
        "bad-utf8" => {
            let (bytes, codes): (Vec<u8>, &[u16]) = match i % 3 {
                0 => (masked(true, 1, b"{\"event\":\"\xff\xfe\"}"), &[1007]),
                1 => (
                    [masked(false, 1, "é".as_bytes()[..1].as_ref()), masked(true, 0, b"\x41")].concat(),
                    &[1007],
                ),
                // A close reason that is not UTF-8: 1002 or 1007 (as Autobahn's case 7.5.1).
                _ => (masked(true, 8, b"\x03\xe8\xc3\x28"), &[1002, 1007]),
            };
            expect_close(ctx, kind, &bytes, codes).await?;
        }
        "pusher-garbage" => {
            // Nonsense at the Pusher level: answered with errors, the connection stays.
            let (mut s, id) = pusher(ctx, None).await?;
            let junk = [
                text("not json"),
                text(r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"app-key:00"}}"#),
                text(r#"{"event":"pusher:subscribe","data":{"channel":"bad name!"}}"#),
                text(&format!(
                    r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
                    "c".repeat(300)
                )),
                text(r#"{"event":"client-oops","channel":"feed-0","data":{}}"#),
                text(r#"{"event":"pusher:unknown","data":42}"#),
                masked(true, 2, &[0, 1, 2, 3]),
                subscribe(&id, "presence-chaos", None), // presence without channel_data
            ];
            for frame in &junk {
                send(&mut s, frame).await?;
            }
            send(&mut s, &text(r#"{"event":"pusher:ping","data":{}}"#)).await?;
            // The connection is still served: the ping is answered.
            let pong = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let (op, payload) = read_frame(&mut s).await?;
                    if op == 1 && payload.windows(11).any(|w| w == b"pusher:pong") {
                        return Ok::<(), String>(());
                    }
                    if op == 8 {
                        return Err(format!("closed: {payload:?}"));
                    }
                }
            })
            .await;
            match pong {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{kind}: {e}")),
                Err(_) => return Err(format!("{kind}: no pusher:pong within 10 s")),
            }
            if i.is_multiple_of(2) {
                send(&mut s, &masked(true, 8, &1000u16.to_be_bytes())).await?;
                let _ = tokio::time::timeout(Duration::from_secs(5), close_code(&mut s)).await;
            } else {
                reset(s);
            }
        }
        "subscribe-storm" => {
            let (mut s, id) = pusher(ctx, None).await?;
            let mut burst = Vec::new();
            for j in 0..40 {
                let channel = match j % 4 {
                    0 => format!("storm-{}", (i + j) % 50),
                    1 => format!("private-storm-{}", j % 7),
                    2 => "presence-chaos".to_string(),
                    _ => feed.clone(),
                };
                let user = format!("chaos-s{}", (i + j) % 6);
                burst.extend(subscribe(&id, &channel, Some(&user)));
                if j % 3 != 0 {
                    burst.extend(unsubscribe(&channel));
                }
            }
            send(&mut s, &burst).await?;
            if i.is_multiple_of(2) { reset(s) } else { drop(s) }
        }
        "presence-churn" => {
            let (mut s, id) = pusher(ctx, None).await?;
            let user = format!("chaos-p{}", i % 7);
            send(&mut s, &subscribe(&id, "presence-chaos", Some(&user))).await?;
            send(&mut s, &subscribe(&id, "presence-side", Some(&user))).await?;
            // Wait for the join, then leave one of three ways.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok((_, p)) = read_frame(&mut s).await {
                    if p.windows(22).any(|w| w == b"subscription_succeeded") {
                        break;
                    }
                }
            })
            .await;
            match i % 3 {
                0 => {
                    send(&mut s, &unsubscribe("presence-chaos")).await?;
                    reset(s);
                }
                1 => reset(s),
                _ => {
                    send(&mut s, &masked(true, 8, &1000u16.to_be_bytes())).await?;
                    let _ = tokio::time::timeout(Duration::from_secs(5), close_code(&mut s)).await;
                }
            }
        }
        "client-event-flood" => {
            let (mut s, id) = pusher(ctx, None).await?;
            let channel = format!("private-flood-{}", i % 3);
            let mut burst = subscribe(&id, &channel, None);
            for n in 0..40 {
                burst.extend(text(&format!(
                    r#"{{"event":"client-spam","channel":"{channel}","data":{{"n":{n}}}}}"#
                )));
            }
            send(&mut s, &burst).await?;
            let _ = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut s)).await;
            reset(s);
        }
        "api-abandoned" => {
            let mut s = connect(ctx, Some(2048)).await?;
            match i % 6 {
                0 => {
                    // A question to every core, reset before the answer.
                    send(
                        &mut s,
                        signed("GET", "/apps/1/channels", "filter_by_prefix=presence-&info=user_count", "")
                            .as_bytes(),
                    )
                    .await?;
                    reset(s);
                }
                1 => {
                    send(&mut s, signed("GET", "/apps/1/channels/presence-chaos/users", "", "").as_bytes())
                        .await?;
                    s.shutdown().await.map_err(|e| e.to_string())?;
                    drop(s);
                }
                2 => {
                    let body = r#"{"name":"noise","channel":"chaos-noise","data":"{}"}"#;
                    send(&mut s, signed("POST", "/apps/1/events", "", body).as_bytes()).await?;
                    reset(s);
                }
                3 => {
                    let body = format!(
                        r#"{{"name":"noise","channel":"chaos-noise","data":"{}"}}"#,
                        "n".repeat(2000)
                    );
                    let req = signed("POST", "/apps/1/events", "", &body);
                    send(&mut s, &req.as_bytes()[..req.len() - 1000]).await?;
                    reset(s);
                }
                4 => {
                    // A large answer, read a little of, then reset.
                    send(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await?;
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                    reset(s);
                }
                _ => {
                    // Pipelined questions, the connection gone after the first answer starts.
                    let mut reqs = String::new();
                    for _ in 0..8 {
                        reqs += &signed(
                            "GET",
                            "/apps/1/channels/presence-chaos",
                            "info=user_count,subscription_count",
                            "",
                        );
                    }
                    send(&mut s, reqs.as_bytes()).await?;
                    let mut buf = [0u8; 16];
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                    reset(s);
                }
            }
        }
        other => unreachable!("{other}"),
    }
    Ok(())
}

/// Each misbehaviour with how many clients do it at once and the pause between their rounds.
const KINDS: &[(&str, usize, u64)] = &[
    ("reset-mid-handshake", 2, 20),
    ("reset-with-upgrade-in-flight", 2, 20),
    ("reset-mid-frame", 2, 20),
    ("half-open", 1, 150),
    ("half-closed", 1, 150),
    ("slowloris-head", 3, 0),
    ("slowloris-body", 2, 0),
    ("oversized-frame", 1, 30),
    ("fragments-over-the-limit", 1, 30),
    ("malformed-frame", 2, 20),
    ("bad-utf8", 1, 30),
    ("pusher-garbage", 1, 30),
    ("subscribe-storm", 2, 20),
    ("presence-churn", 3, 10),
    ("client-event-flood", 1, 30),
    ("api-abandoned", 2, 20),
];

/// Runs every misbehaviour until `until`.
async fn chaos(ctx: Arc<Ctx>, until: Instant) {
    let mut tasks = Vec::new();
    for &(kind, workers, pause) in KINDS {
        for w in 0..workers {
            let ctx = ctx.clone();
            tasks.push(tokio::spawn(async move {
                let first = w as u64 * 1_000_000;
                let mut i = first;
                while Instant::now() < until && i - first < MAX_ROUNDS {
                    match tokio::time::timeout(Duration::from_secs(15), misbehave(&ctx, kind, i)).await {
                        Ok(Ok(())) => ctx.tally.ran(kind),
                        Ok(Err(e)) => ctx.tally.wrong(format!("{kind} #{i}: {e}")),
                        Err(_) => ctx.tally.wrong(format!("{kind} #{i}: stuck for 15 s")),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(pause)).await; // pacing, not waiting
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A publisher's keep-alive connection, as the server SDKs keep one. (Sequential publishes on
/// new connections land on either core, and those are at present not always delivered in
/// publish order: a bug of its own, outside what this run is about.)
struct KeepAlive {
    addr: String,
    conn: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl KeepAlive {
    /// One signed POST /apps/1/events: the status line, or why there was none.
    fn post(&mut self, body: &str) -> Res<String> {
        use std::io::{BufRead, Read, Write};
        let request = signed("POST", "/apps/1/events", "", body);
        let start = Instant::now();
        if self.conn.is_none() {
            let s = std::net::TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
            self.conn = Some(std::io::BufReader::new(s));
        }
        let conn = self.conn.as_mut().unwrap();
        let local = conn.get_ref().local_addr().map_err(|e| e.to_string())?;
        let failed = |e: String| format!("from {local}: {e} after {:?}", start.elapsed());
        conn.get_mut().write_all(request.as_bytes()).map_err(|e| failed(format!("write: {e}")))?;
        let (mut status, mut length) = (String::new(), 0);
        loop {
            let mut line = String::new();
            match conn.read_line(&mut line) {
                Ok(0) => return Err(failed(format!("closed without an answer (head so far {status:?})"))),
                Ok(_) => {}
                Err(e) => return Err(failed(format!("read: {e}"))),
            }
            if status.is_empty() {
                status = line.trim_end().to_string();
            } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|e| format!("content-length: {e}"))?;
            } else if line == "\r\n" {
                break;
            }
        }
        let mut answer = vec![0; length];
        conn.read_exact(&mut answer).map_err(|e| failed(format!("body: {e}")))?;
        if status.is_empty() {
            return Err(failed("an empty answer".into()));
        }
        Ok(status)
    }
}

/// Publishes `seq` {n} to every channel, RATE rounds a second, until `stop`; returns the last n.
fn publisher(addr: String, names: Vec<String>, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>) -> u64 {
    let pad = "p".repeat(200);
    let start = Instant::now();
    let mut keep_alive = KeepAlive { addr: addr.clone(), conn: None };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let data = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        let body = serde_json::json!({"name": "seq", "channels": names, "data": data}).to_string();
        let status = keep_alive.post(&body).unwrap_or_else(|e| {
            let s = scrape(&addr);
            panic!(
                "publish {n}: {e} (handshake timeouts so far: {:?})",
                metric(&s, "corecast_handshake_timeouts_total")
            )
        });
        if status.starts_with("HTTP/1.1 200") {
            n += 1;
        } else if status.starts_with("HTTP/1.1 503") {
            // Back-pressure: the same event again, as an SDK user would.
            refused.fetch_add(1, Ordering::Relaxed);
        } else {
            panic!("publish {n}: {status}");
        }
        // Pacing to RATE rounds a second.
        let due = start + Duration::from_millis(n * 1000 / RATE);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert!(n > 0, "nothing was published");
    n - 1
}

/// The figures the run must leave at zero, from one scrape.
fn leftovers(scrape: &str) -> Vec<(&'static str, Option<f64>)> {
    [
        "corecast_websocket_connections_all",
        "corecast_presence_members",
        "corecast_channels",
        "corecast_queued_bytes",
        "corecast_app_connections",
    ]
    .into_iter()
    .map(|name| (name, metric(scrape, name)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_loses_nothing_for_well_behaved_clients_and_leaves_nothing_behind() {
    let node = node();
    let run_start = Instant::now();
    let server = Server::start(&[
        "--cores",
        "2",
        "--handshake-timeout",
        "2",
        "--activity-timeout",
        "2",
        "--pong-timeout",
        "3",
        "--close-timeout",
        "1",
    ]);
    let pid = server.child.id();
    let addr = server.addr();
    let rss_start = rss_of(pid);

    // The well-behaved clients.
    let mut steady = tokio::process::Command::new(node)
        .arg(format!("{}/tests/clients/pusher/chaos_steady.js", env!("CARGO_MANIFEST_DIR")))
        .env("CORECAST_PORT", server.port.to_string())
        .env("CLIENTS", GOOD.to_string())
        .env("FEEDS", FEEDS.to_string())
        .env("SCENARIO_TIMEOUT_MS", "90000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut out = tokio::io::BufReader::new(steady.stdout.take().unwrap());
    let mut line = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(20), out.read_line(&mut line)).await;
    assert!(matches!(ready, Ok(Ok(_))) && line.trim() == "ready", "chaos_steady.js not ready: {line:?}");

    let mut channels: Vec<String> = (0..FEEDS).map(|k| format!("feed-{k}")).collect();
    channels.push("presence-chaos".into());
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (addr, channels, stop, refused) = (addr.clone(), channels.clone(), stop.clone(), refused.clone());
        tokio::task::spawn_blocking(move || publisher(addr, channels, stop, refused))
    };

    let ctx = Arc::new(Ctx { addr: addr.parse().unwrap(), tally: Tally::default() });
    let state = |what: &str| format!("{what}:\n{}", scrape(&server.addr()));
    // `others`: TCP connections besides the WebSockets and the scrape (the publisher's).
    let settled = |want_ws: f64, want_members: f64, others: f64| {
        let s = scrape(&server.addr());
        (metric(&s, "corecast_websocket_connections_all") == Some(want_ws)
            && metric(&s, "corecast_presence_members") == Some(want_members)
            && metric(&s, "corecast_connections") == Some(want_ws + others + 1.0))
        .then_some(())
    };

    // Warm-up: the same chaos, so that the allocator and the tables reach their working size;
    // the baseline is taken once the server is back to only the well-behaved clients.
    chaos(ctx.clone(), Instant::now() + WARM_UP).await;
    let good = GOOD as f64;
    let held_warm_up = std::mem::take(&mut *ctx.tally.held.lock().unwrap());
    tokio::task::block_in_place(|| {
        poll(
            "the warm-up's connections to be reaped",
            REAP,
            || settled(good, good, 1.0),
            || state("after warm-up"),
        )
    });
    drop(held_warm_up);
    let rss_baseline = rss_of(pid);

    // The main round, sampling the server's RSS meanwhile.
    let main_start = Instant::now();
    let sampler = {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, peak) = (stop.clone(), Arc::new(AtomicU64::new(0)));
        let p = peak.clone();
        let h = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await; // a sampling interval
            }
        });
        (stop, peak, h)
    };
    chaos(ctx.clone(), main_start + CHAOS).await;
    let chaos_took = main_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let last = publishing.await.unwrap();
    for c in &channels {
        let (status, body) = publish(&addr, &[c], "end", &format!(r#"{{"last":{last}}}"#));
        assert!(status.starts_with("HTTP/1.1 200"), "end: {status} {body}");
    }

    // The well-behaved clients check their sequences and presence, then disconnect.
    let report = tokio::time::timeout(REAP + Duration::from_secs(10), steady.wait_with_output()).await;
    let report = report.expect("chaos_steady.js ends").unwrap();
    let steady_out = format!(
        "{line}{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    // (stdout was partly read above; the rest is in `out`.)
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest).await;
    let steady_out = format!("{steady_out}{rest}");
    assert!(report.status.success(), "well-behaved clients:\n{steady_out}\nserver log:\n{}", server.log());

    // Nothing left: the half-open sockets are still held open here, so the server dropped them
    // by itself.
    tokio::task::block_in_place(|| {
        poll("every connection to be gone", REAP, || settled(0.0, 0.0, 0.0), || state("after the run"))
    });
    let last_scrape = scrape(&addr);
    for (name, value) in leftovers(&last_scrape) {
        assert_eq!(value, Some(0.0), "{name} after the run:\n{last_scrape}");
    }
    let held = ctx.tally.held.lock().unwrap().len();
    let (stop_sampling, peak, h) = sampler;
    stop_sampling.store(true, Ordering::Relaxed);
    h.await.unwrap();
    let rss_end = rss_of(pid);
    let runs = ctx.tally.runs.lock().unwrap().clone();
    let total: u64 = runs.values().sum();
    eprintln!(
        "chaos: {total} misbehaving connections in {chaos_took:?} (+ warm-up), {held} half-open/half-closed held to the \
         end; {} publishes refused with 503 and retried; RSS start {} KiB, baseline {} KiB, peak {} KiB, end {} KiB; \
         run {:?}\n{runs:?}\n{}",
        refused.load(Ordering::Relaxed),
        rss_start / 1024,
        rss_baseline / 1024,
        peak.load(Ordering::Relaxed) / 1024,
        rss_end / 1024,
        run_start.elapsed(),
        steady_out.trim()
    );

    let wrong = ctx.tally.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "{} answers were wrong:\n{}", wrong.len(), wrong.join("\n"));
    for &(kind, _, _) in KINDS {
        assert!(runs.get(kind).is_some_and(|&n| n >= 2), "{kind} hardly ran: {runs:?}");
    }
    assert!(
        rss_end <= rss_baseline + RSS_BOUND,
        "server RSS {} KiB after the run, baseline {} KiB (+{} KiB allowed)",
        rss_end / 1024,
        rss_baseline / 1024,
        RSS_BOUND / 1024
    );
    drop(ctx);
}
