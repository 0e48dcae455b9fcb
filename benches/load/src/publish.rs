//! Publishers: threads that offer events at a set rate, each event carrying a probe (publish
//! time, channel, publisher, sequence number; `frames.rs`).
//!
//! - Pusher servers: signed HTTP API requests, up to `batch` events per request
//!   (`batch_events`), up to `window` requests pipelined on one keep-alive connection. A server
//!   that closes the connection after each response (soketi) gets one request per connection.
//! - Plain broadcast servers: one WebSocket per channel (`pub_path`), events written as masked
//!   text frames, several per write.
//!
//! Each publisher owns some channels (channel `c` belongs to publisher `c % publishers`; with
//! fewer channels than publishers, publishers share them) and numbers its events per channel,
//! so subscribers can check order and gaps. A publisher that falls more than 100 ms behind its
//! rate skips ahead: the offered rate then shows it (`achieved_events_per_second`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::frames::{self, Probe};
use crate::recv::now_ns;
use crate::sign;

/// Where and how events are published.
#[derive(Debug, Clone)]
pub enum Via {
    Http { server: SocketAddr, app_id: String, key: String, secret: String, batch: usize, window: usize },
    WebSocket { server: SocketAddr, pub_path: String },
}

pub struct Spec {
    pub via: Via,
    pub channels: Vec<String>,
    pub publishers: usize,
    pub payload: usize,
}

/// Counters the run reads.
pub struct Counters {
    /// Events the server accepted (HTTP 2xx; written, for WebSocket publishers).
    pub published: Arc<AtomicU64>,
    /// Events refused or lost with their connection.
    pub errors: Arc<AtomicU64>,
}

pub struct Publishing {
    /// Events per second, all publishers and channels together (0: paused).
    pub rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    per_channel: Arc<Vec<AtomicU64>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Channels publisher `p` of `n` owns, out of `c`.
pub fn owned(p: usize, n: usize, c: usize) -> Vec<usize> {
    if c >= n { (p..c).step_by(n).collect() } else { vec![p % c] }
}

/// Fraction of the total rate publisher `p` of `n` offers (each channel gets an equal share,
/// split between the publishers that own it).
pub fn share(p: usize, n: usize, c: usize) -> f64 {
    let sharers = |ch: usize| (0..n).filter(|&q| owned(q, n, c).contains(&ch)).count().max(1);
    owned(p, n, c).iter().map(|&ch| 1.0 / c as f64 / sharers(ch) as f64).sum()
}

impl Publishing {
    pub fn start(spec: Spec, counters: &Counters) -> Publishing {
        let rate = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let c = spec.channels.len().max(1);
        let per_channel = Arc::new((0..c).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        let n = spec.publishers.clamp(1, 255);
        let threads = (0..n)
            .map(|p| {
                let ctx = Ctx {
                    index: p as u8,
                    channels: spec.channels.clone(),
                    owned: owned(p, n, c),
                    share: share(p, n, c),
                    payload: spec.payload,
                    rate: rate.clone(),
                    stop: stop.clone(),
                    per_channel: per_channel.clone(),
                    published: counters.published.clone(),
                    errors: counters.errors.clone(),
                    seq: vec![0; c],
                };
                let via = spec.via.clone();
                std::thread::Builder::new()
                    .name(format!("publisher-{p}"))
                    .spawn(move || match via {
                        Via::Http { server, app_id, key, secret, batch, window } => http_publisher(
                            ctx,
                            server,
                            &app_id,
                            &key,
                            &secret,
                            batch.clamp(1, 10),
                            window.max(1),
                        ),
                        Via::WebSocket { server, pub_path } => ws_publisher(ctx, server, &pub_path),
                    })
                    .expect("publisher thread starts")
            })
            .collect();
        Publishing { rate, stop, per_channel, threads }
    }

    pub fn published_per_channel(&self) -> Vec<u64> {
        self.per_channel.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Ctx {
    index: u8,
    channels: Vec<String>,
    owned: Vec<usize>,
    share: f64,
    payload: usize,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    per_channel: Arc<Vec<AtomicU64>>,
    published: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    /// Last sequence number used, per channel.
    seq: Vec<u32>,
}

impl Ctx {
    fn my_rate(&self) -> f64 {
        self.rate.load(Ordering::Relaxed) as f64 * self.share
    }

    /// The next event's probe for channel `c`.
    fn probe(&mut self, c: usize) -> Probe {
        self.seq[c] = self.seq[c].wrapping_add(1);
        Probe { sent_ns: now_ns(), channel: c as u16, publisher: self.index, seq: self.seq[c] }
    }

    fn accepted(&self, channels: &[usize]) {
        for &c in channels {
            self.per_channel[c].fetch_add(1, Ordering::Relaxed);
        }
        self.published.fetch_add(channels.len() as u64, Ordering::Relaxed);
    }

    fn failed(&self, n: usize) {
        self.errors.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Paces events: how many are due now at a rate that may change.
struct Pacer {
    start: Instant,
    sent: u64,
    rate: f64,
}

impl Pacer {
    fn new() -> Pacer {
        Pacer { start: Instant::now(), sent: 0, rate: 0.0 }
    }

    fn due(&mut self, rate: f64, now: Instant) -> u64 {
        if rate != self.rate {
            self.rate = rate;
            self.start = now;
            self.sent = 0;
        }
        if rate <= 0.0 {
            return 0;
        }
        let should = (now.duration_since(self.start).as_secs_f64() * rate) as u64 + 1;
        let due = should.saturating_sub(self.sent);
        let cap = (rate * 0.1).ceil() as u64 + 1;
        if due > cap {
            self.sent += due - cap;
            return cap;
        }
        due
    }

    fn take(&mut self, n: u64) {
        self.sent += n;
    }

    /// When `n` (≥ 1) events not yet taken are due.
    fn at(&self, n: u64) -> Option<Instant> {
        (self.rate > 0.0)
            .then(|| self.start + Duration::from_secs_f64((self.sent + n.max(1) - 1) as f64 / self.rate))
    }

    /// Whether to send now: `batch` events are due, or the oldest due one has waited `hold`.
    fn ready(&self, due: u64, batch: u64, hold: Duration, now: Instant) -> bool {
        due >= batch || (due > 0 && self.at(1).is_some_and(|t| now >= t + hold))
    }

    /// How long to wait (at most `max`) until `ready` can next be true.
    fn wait(&self, batch: u64, hold: Duration, max: Duration) -> Duration {
        match (self.at(batch), self.at(1)) {
            (Some(full), Some(first)) => {
                full.min(first + hold).saturating_duration_since(Instant::now()).min(max)
            }
            _ => max,
        }
    }
}

/// Longest an HTTP publisher holds due events to fill a batch.
const HTTP_HOLD: Duration = Duration::from_millis(5);
/// Longest a WebSocket publisher holds due events to write several frames at once.
const WS_HOLD: Duration = Duration::from_millis(2);
/// How often a WebSocket publisher reads what the server sent it (pings, closes).
const WS_READ_EVERY: Duration = Duration::from_millis(50);

/// Waits until `s` is readable or `d` passes.
fn wait_readable(s: &TcpStream, d: Duration) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = d.as_millis().clamp(1, 1000) as u16;
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// Writes all of `buf` to a non-blocking socket, waiting briefly when it is full (5 s at most).
fn write_all_nb(s: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > until {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what a non-blocking socket has into `buf`; Ok(false) at end of stream.
fn read_available(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One HTTP response at the start of `buf`: (bytes, 2xx, the server closes after it).
fn parse_response(buf: &[u8]) -> Option<(usize, bool, bool)> {
    let head_end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    let mut close = head.starts_with("HTTP/1.0");
    for line in head.lines().skip(1) {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse().unwrap_or(0);
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    (buf.len() >= head_end + len).then_some((head_end + len, (200..300).contains(&status), close))
}

fn http_request(
    ctx: &mut Ctx,
    server: SocketAddr,
    app_id: &str,
    key: &str,
    secret: &str,
    channels: &[usize],
) -> Vec<u8> {
    let pad = ctx.payload;
    let events: Vec<(String, String)> = channels
        .iter()
        .map(|&c| {
            let p = ctx.probe(c);
            let data = frames::probe_text(&p, pad);
            (ctx.channels[c].clone(), String::from_utf8(data).expect("ASCII"))
        })
        .collect();
    signed_request(server, app_id, key, secret, &events)
}

/// A signed HTTP API request publishing `events` (channel, data): `/events` for one,
/// `/batch_events` for several.
fn signed_request(
    server: SocketAddr,
    app_id: &str,
    key: &str,
    secret: &str,
    events: &[(String, String)],
) -> Vec<u8> {
    let (path, body) = if let [(ch, data)] = events {
        (format!("/apps/{app_id}/events"), format!(r#"{{"name":"bench","channel":"{ch}","data":"{data}"}}"#))
    } else {
        let mut body = String::from(r#"{"batch":["#);
        for (i, (ch, data)) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"channel":"{ch}","name":"bench","data":"{data}"}}"#));
        }
        body.push_str("]}");
        (format!("/apps/{app_id}/batch_events"), body)
    };
    let target = sign::signed_path("POST", &path, key, secret, body.as_bytes(), &[]);
    format!(
        "POST {target} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What one broadcast round's publishing achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    /// Events the server accepted (2xx), per channel at most one.
    pub accepted: u64,
    /// Events in requests answered otherwise, or not answered.
    pub refused: u64,
    /// From building the first request to the last answer.
    pub seconds: f64,
}

/// Publishes one event to every channel at once — publisher 0, sequence number `seq` on each
/// channel — as `batch_events` requests of up to `batch` events pipelined on one keep-alive
/// connection to `server`, and waits (at most 30 s) for every answer. Returns the channels whose
/// event the server accepted.
#[allow(clippy::too_many_arguments)]
pub fn http_round(
    server: SocketAddr,
    app_id: &str,
    key: &str,
    secret: &str,
    channels: &[String],
    seq: u32,
    payload: usize,
    batch: usize,
) -> io::Result<(Vec<usize>, Round)> {
    let started = Instant::now();
    let batch = batch.clamp(1, 10);
    let mut out = Vec::new();
    let mut requests: VecDeque<Vec<usize>> = VecDeque::new();
    let indices: Vec<usize> = (0..channels.len()).collect();
    for chunk in indices.chunks(batch) {
        let events: Vec<(String, String)> = chunk
            .iter()
            .map(|&c| {
                let p = Probe { sent_ns: now_ns(), channel: c as u16, publisher: 0, seq };
                let data = frames::probe_text(&p, payload);
                (channels[c].clone(), String::from_utf8(data).expect("ASCII"))
            })
            .collect();
        out.extend_from_slice(&signed_request(server, app_id, key, secret, &events));
        requests.push_back(chunk.to_vec());
    }
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(&out)?;
    let mut accepted_channels = Vec::new();
    let mut round = Round::default();
    let mut inbuf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let until = Instant::now() + Duration::from_secs(30);
    while !requests.is_empty() && Instant::now() < until {
        while let Some((used, ok, _close)) = parse_response(&inbuf) {
            inbuf.drain(..used);
            let Some(chs) = requests.pop_front() else { break };
            if ok {
                round.accepted += chs.len() as u64;
                accepted_channels.extend(chs);
            } else {
                round.refused += chs.len() as u64;
            }
        }
        if requests.is_empty() {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    round.refused += requests.iter().map(|r| r.len() as u64).sum::<u64>();
    round.seconds = started.elapsed().as_secs_f64();
    Ok((accepted_channels, round))
}

struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    /// Channels of each request awaiting its response, oldest first.
    inflight: VecDeque<Vec<usize>>,
    answered: u64,
}

fn http_connect(server: SocketAddr) -> io::Result<HttpConn> {
    let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(HttpConn { stream, inbuf: Vec::new(), inflight: VecDeque::new(), answered: 0 })
}

fn http_publisher(
    mut ctx: Ctx,
    server: SocketAddr,
    app_id: &str,
    key: &str,
    secret: &str,
    batch: usize,
    window: usize,
) {
    let mut conn: Option<HttpConn> = None;
    // One request per connection until a response shows the server keeps connections open
    // (soketi ends each after its response); then `window` requests pipelined.
    let mut one_per_connection = true;
    let mut keep_alive_seen = false;
    let mut pacer = Pacer::new();
    let mut rr = 0usize;
    while !ctx.stop.load(Ordering::Relaxed) {
        // Responses first: they free the window.
        if let Some(c) = conn.as_mut() {
            let open = read_available(&mut c.stream, &mut c.inbuf).unwrap_or(false);
            let mut closed = !open;
            while let Some((used, ok, close)) = parse_response(&c.inbuf) {
                c.inbuf.drain(..used);
                c.answered += 1;
                if let Some(chs) = c.inflight.pop_front() {
                    if ok { ctx.accepted(&chs) } else { ctx.failed(chs.len()) }
                }
                if close {
                    closed = true;
                    break;
                }
                if !keep_alive_seen {
                    keep_alive_seen = true;
                    one_per_connection = false;
                }
            }
            if closed {
                let lost: usize = c.inflight.iter().map(Vec::len).sum();
                ctx.failed(lost);
                conn = None;
            }
        }
        let rate = ctx.my_rate();
        let window = if one_per_connection { 1 } else { window };
        let inflight = conn.as_ref().map_or(0, |c| c.inflight.len());
        let room = window.saturating_sub(inflight);
        let used_up = one_per_connection && conn.as_ref().is_some_and(|c| c.answered > 0 || inflight > 0);
        let now = Instant::now();
        let due = pacer.due(rate, now);
        // Full batches at high rates; at low rates, events wait at most HTTP_HOLD.
        if room > 0 && !used_up && pacer.ready(due, batch as u64, HTTP_HOLD, now) {
            let n = (due as usize).min(room * batch);
            if conn.is_none() {
                match http_connect(server) {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        pacer.take(n as u64);
                        ctx.failed(n);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().unwrap();
            let mut out = Vec::new();
            let mut left = n;
            while left > 0 {
                let k = left.min(batch);
                let chs: Vec<usize> = (0..k)
                    .map(|_| {
                        rr = (rr + 1) % ctx.owned.len();
                        ctx.owned[rr]
                    })
                    .collect();
                out.extend_from_slice(&http_request(&mut ctx, server, app_id, key, secret, &chs));
                c.inflight.push_back(chs);
                left -= k;
            }
            pacer.take(n as u64);
            if write_all_nb(&mut c.stream, &out).is_err() {
                let lost: usize = c.inflight.iter().map(Vec::len).sum();
                ctx.failed(lost);
                conn = None;
            }
            continue;
        }
        let wait = pacer.wait(batch as u64, HTTP_HOLD, Duration::from_millis(5));
        match conn.as_ref() {
            Some(c) if !c.inflight.is_empty() => wait_readable(&c.stream, wait),
            _ if rate <= 0.0 => std::thread::sleep(Duration::from_millis(2)),
            _ => std::thread::sleep(wait),
        }
        // A one-request connection that has its answer is done with.
        if one_per_connection && conn.as_ref().is_some_and(|c| c.answered > 0 && c.inflight.is_empty()) {
            conn = None;
        }
    }
}

/// Appends a masked client text frame.
fn push_masked(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// A blocking WebSocket handshake; the stream is non-blocking afterwards.
pub fn ws_open(server: SocketAddr, path: &str) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 || head.len() > 8192 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
        return Err(io::Error::other(format!("{path}: {line}")));
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

struct WsPub {
    channel: usize,
    stream: Option<TcpStream>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    pending: Vec<usize>,
}

fn ws_publisher(mut ctx: Ctx, server: SocketAddr, pub_path: &str) {
    let paths: Vec<String> = ctx.channels.iter().map(|ch| pub_path.replace("{channel}", ch)).collect();
    let mut conns: Vec<WsPub> = ctx
        .owned
        .iter()
        .map(|&c| WsPub { channel: c, stream: None, inbuf: Vec::new(), out: Vec::new(), pending: Vec::new() })
        .collect();
    let mut pacer = Pacer::new();
    let mut rr = 0usize;
    let mut mask = u32::from(ctx.index).wrapping_mul(2_654_435_761) | 1;
    let mut payload = vec![b'x'; ctx.payload.max(frames::PROBE_LEN)];
    // A write per connection carries about a frame per owned channel, or what WS_HOLD gathers.
    let batch = ctx.owned.len() as u64;
    let mut last_read = Instant::now();
    while !ctx.stop.load(Ordering::Relaxed) {
        for w in conns.iter_mut() {
            if w.stream.is_none() {
                match ws_open(server, &paths[w.channel]) {
                    Ok(s) => w.stream = Some(s),
                    Err(e) => {
                        eprintln!("corecast-load: publisher: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        let now = Instant::now();
        let due = pacer.due(ctx.my_rate(), now);
        let due = if pacer.ready(due, batch, WS_HOLD, now) { due as usize } else { 0 };
        if due > 0 {
            for _ in 0..due {
                rr = (rr + 1) % conns.len();
                let c = conns[rr].channel;
                let p = ctx.probe(c);
                frames::write_probe(&mut payload, &p);
                mask ^= mask << 13;
                mask ^= mask >> 17;
                mask ^= mask << 5;
                let w = &mut conns[rr];
                push_masked(&mut w.out, &payload, mask.to_ne_bytes());
                w.pending.push(c);
            }
            pacer.take(due as u64);
            for w in conns.iter_mut() {
                if w.out.is_empty() {
                    continue;
                }
                let ok = match w.stream.as_mut() {
                    Some(s) => write_all_nb(s, &w.out).is_ok(),
                    None => false,
                };
                if ok {
                    ctx.accepted(&w.pending);
                } else {
                    ctx.failed(w.pending.len());
                    w.stream = None;
                }
                w.out.clear();
                w.pending.clear();
            }
        }
        // What the server says to a publisher: pings (answered) and closes.
        if last_read.elapsed() < WS_READ_EVERY {
            if due == 0 {
                std::thread::sleep(pacer.wait(batch, WS_HOLD, Duration::from_millis(2)));
            }
            continue;
        }
        last_read = Instant::now();
        for w in conns.iter_mut() {
            let Some(s) = w.stream.as_mut() else { continue };
            let alive = read_available(s, &mut w.inbuf).unwrap_or(false);
            let mut reply = Vec::new();
            let mut closed = !alive;
            let used = frames::scan(&w.inbuf, |op, _, p| match op {
                9 => push_control(&mut reply, 10, p),
                8 => closed = true,
                _ => {}
            });
            match used {
                Ok(n) => {
                    w.inbuf.drain(..n);
                }
                Err(_) => closed = true,
            }
            if !reply.is_empty() && write_all_nb(s, &reply).is_err() {
                closed = true;
            }
            if closed {
                eprintln!("corecast-load: the server closed a publisher connection; reconnecting");
                w.stream = None;
            }
        }
        if due == 0 {
            std::thread::sleep(pacer.wait(batch, WS_HOLD, Duration::from_millis(2)));
        }
    }
    for w in conns.iter_mut() {
        if let Some(s) = w.stream.as_mut() {
            let mut close = Vec::new();
            push_control(&mut close, 8, &1000u16.to_be_bytes());
            let _ = write_all_nb(s, &close);
        }
    }
}

fn push_control(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.extend_from_slice(&corecast::protocol::frame::encode_client(
        true,
        opcode,
        &payload[..payload.len().min(125)],
        [0x5a, 0xa5, 0x3c, 0xc3],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_split_between_publishers_and_every_channel_gets_an_equal_share() {
        assert_eq!(owned(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(owned(1, 2, 5), vec![1, 3]);
        assert_eq!(owned(2, 3, 1), vec![0]);
        for (n, c) in [(1, 1), (2, 1), (3, 2), (2, 100), (4, 100), (7, 3)] {
            let total: f64 = (0..n).map(|p| share(p, n, c)).sum();
            assert!((total - 1.0).abs() < 1e-9, "{n} publishers, {c} channels: {total}");
            for ch in 0..c {
                let per: f64 = (0..n)
                    .filter(|&p| owned(p, n, c).contains(&ch))
                    .map(|p| share(p, n, c) / owned(p, n, c).len() as f64)
                    .sum();
                assert!((per - 1.0 / c as f64).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn pacer_offers_the_rate_and_skips_a_backlog() {
        let mut p = Pacer::new();
        let t0 = Instant::now();
        assert_eq!(p.due(1000.0, t0), 1);
        p.take(1);
        assert_eq!(p.due(1000.0, t0 + Duration::from_millis(10)), 10);
        p.take(10);
        // Two seconds late: at most 100 ms of events (+1) are offered.
        assert_eq!(p.due(1000.0, t0 + Duration::from_secs(2)), 101);
    }

    #[test]
    fn pacer_fills_batches_or_sends_what_waited_long_enough() {
        let mut p = Pacer::new();
        let t0 = Instant::now();
        let hold = Duration::from_millis(5);
        let due = p.due(1000.0, t0);
        assert!(!p.ready(due, 10, hold, t0), "one event, just due");
        let t = t0 + Duration::from_millis(9);
        let due = p.due(1000.0, t);
        assert!(p.ready(due, 10, hold, t), "ten due: a full batch");
        let mut q = Pacer::new();
        let due = q.due(100.0, t0);
        assert!(q.ready(due, 10, hold, t0 + hold), "the first waited the hold time");
    }

    #[test]
    fn responses_are_parsed_with_their_length_and_connection_header() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 413 Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (n, ok, close) = parse_response(two).unwrap();
        assert!(ok && !close);
        let (m, ok, close) = parse_response(&two[n..]).unwrap();
        assert!(!ok && close);
        assert_eq!(n + m, two.len());
        assert_eq!(parse_response(&two[..n - 1]), None);
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        let mut out = Vec::new();
        push_masked(&mut out, b"hello", [1, 2, 3, 4]);
        assert_eq!(out, corecast::protocol::frame::encode_client(true, 1, b"hello", [1, 2, 3, 4]));
        let mut long = Vec::new();
        push_masked(&mut long, &[b'y'; 300], [9, 8, 7, 6]);
        assert_eq!(long, corecast::protocol::frame::encode_client(true, 1, &[b'y'; 300], [9, 8, 7, 6]));
    }
}
