//! The subscribers' receive loop: one thread per worker process owns every subscribed socket
//! once its handshake (and Pusher subscription) is done, and reads them with edge-triggered
//! epoll into one large buffer, scanning all the frames of a read in place. Per frame it finds
//! the probe, records the latency (one clock read per read, not per frame), counts the delivery
//! and checks the publisher's sequence number; nothing is allocated or copied per frame. Only
//! the tail of a frame split across reads is kept, per connection, until the next read.
//!
//! Each read also asks the kernel when the newest segment it returns arrived (`SO_TIMESTAMPNS`)
//! and records how long the loop took to come round to it: the *read lag*. A latency figure
//! measures the server only while that lag is small; a large one means the harness (its CPU
//! share, on a box it shares with the server) was the bottleneck.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;

use crate::frames::{self, Probe};
use crate::inflate_memo::InflateMemo;

/// Bytes read from a socket at once.
pub const READ_BUF: usize = 256 * 1024;
const WAKER: Token = Token(usize::MAX);
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Figures the receive thread publishes (every 50 ms and when it ends).
#[derive(Default)]
pub struct Shared {
    pub open: AtomicU64,
    pub closed: AtomicU64,
    /// Messages carrying a probe.
    pub deliveries: AtomicU64,
    /// Other messages (protocol messages, heartbeats).
    pub other_messages: AtomicU64,
    /// Sequence numbers skipped: events a subscriber missed between two it received.
    pub seq_gaps: AtomicU64,
    /// Events that arrived with a sequence number at or below one already seen.
    pub out_of_order: AtomicU64,
    /// Events for a channel the connection did not subscribe to, or from an unknown publisher.
    pub misrouted: AtomicU64,
    pub reads: AtomicU64,
    pub bytes: AtomicU64,
    pub pongs_sent: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// CPU time of the receive thread, microseconds.
    pub cpu_us: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
    /// Per read: from the kernel's arrival time of the newest segment read to the read.
    read_lag: Mutex<Option<Histogram<u64>>>,
    stop: AtomicBool,
}

impl Shared {
    /// Latency recorded since the last call (microseconds).
    pub fn take_latency(&self) -> Option<Histogram<u64>> {
        self.latency.lock().unwrap().take()
    }

    /// Read lag recorded since the last call (microseconds).
    pub fn take_read_lag(&self) -> Option<Histogram<u64>> {
        self.read_lag.lock().unwrap().take()
    }
}

/// A connection handed to the receive thread.
pub struct NewConn {
    pub stream: std::net::TcpStream,
    /// Bytes already read past the handshake or subscription.
    pub leftover: Vec<u8>,
    /// Channel index the connection subscribed to (what its probes must say).
    pub channel: u16,
    /// Answer `pusher:ping` with `pusher:pong`.
    pub pusher: bool,
}

pub struct Receiver {
    shared: Arc<Shared>,
    tx: mpsc::Sender<NewConn>,
    waker: Arc<Waker>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// CPU time of the calling thread, microseconds.
pub fn thread_cpu_us() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            us(u.user_time()) + us(u.system_time())
        }
        Err(_) => 0,
    }
}

impl Receiver {
    /// Starts the thread; `publishers` is how many publishers number their events separately.
    pub fn start(publishers: usize) -> io::Result<Receiver> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("recv".into())
            .spawn(move || Loop::new(poll, rx, s, publishers.max(1)).run())?;
        Ok(Receiver { shared, tx, waker, thread: Mutex::new(Some(thread)) })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Hands a connection over (counted open from now on).
    pub fn add(&self, conn: NewConn) {
        self.shared.open.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(conn).is_ok() {
            let _ = self.waker.wake();
        } else {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends every connection a close frame, publishes the last figures and ends the thread.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Conn {
    stream: TcpStream,
    /// An incomplete frame from the last read (empty almost always).
    carry: Vec<u8>,
    /// Per publisher: the next sequence number expected (0: none seen yet).
    next: Box<[u32]>,
    channel: u16,
    pusher: bool,
    mask: u32,
}

#[derive(Default)]
struct Counts {
    deliveries: u64,
    other: u64,
    gaps: u64,
    out_of_order: u64,
    misrouted: u64,
    reads: u64,
    bytes: u64,
    pongs: u64,
}

struct Loop {
    poll: Poll,
    rx: mpsc::Receiver<NewConn>,
    shared: Arc<Shared>,
    publishers: usize,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    buf: Vec<u8>,
    out: Vec<u8>,
    counts: Counts,
    latency: Histogram<u64>,
    read_lag: Histogram<u64>,
    /// Control-message space for one arrival time, reused by every read.
    cmsg: Vec<u8>,
    /// For frames that arrive compressed (`--deflate`).
    inflater: InflateMemo,
}

enum After {
    Open,
    Close,
}

impl Loop {
    fn new(poll: Poll, rx: mpsc::Receiver<NewConn>, shared: Arc<Shared>, publishers: usize) -> Loop {
        Loop {
            poll,
            rx,
            shared,
            publishers,
            conns: Vec::new(),
            free: Vec::new(),
            buf: vec![0; READ_BUF],
            out: Vec::new(),
            counts: Counts::default(),
            latency: hist(),
            read_lag: hist(),
            cmsg: nix::cmsg_space!(TimeSpec),
            inflater: InflateMemo::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_flush = Instant::now();
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(FLUSH_EVERY))
                && e.kind() != io::ErrorKind::Interrupted
            {
                eprintln!("corecast-load: receive loop: {e}");
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.admit(),
                    Token(i) => {
                        if let After::Close = self.read(i) {
                            self.close(i, false);
                        }
                    }
                }
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.flush();
                last_flush = Instant::now();
            }
        }
        self.admit();
        for i in 0..self.conns.len() {
            if self.conns[i].is_some() {
                self.close(i, true);
            }
        }
        self.flush();
    }

    fn admit(&mut self) {
        while let Ok(nc) = self.rx.try_recv() {
            let _ = nc.stream.set_nonblocking(true);
            // Without arrival times the read lag is simply not recorded.
            let _ = setsockopt(&nc.stream, sockopt::ReceiveTimestampns, &true);
            let mut stream = TcpStream::from_std(nc.stream);
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if self.poll.registry().register(&mut stream, Token(i), Interest::READABLE).is_err() {
                self.free.push(i);
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                self.shared.closed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.conns[i] = Some(Conn {
                stream,
                carry: nc.leftover,
                next: vec![0; self.publishers].into_boxed_slice(),
                channel: nc.channel,
                pusher: nc.pusher,
                mask: (i as u32).wrapping_mul(2_654_435_761) | 1,
            });
            // Frames that came with the handshake are processed now; the socket's own data
            // shows up as a readiness event (epoll reports data already there on register).
            if !self.conns[i].as_ref().unwrap().carry.is_empty() {
                let carry = std::mem::take(&mut self.conns[i].as_mut().unwrap().carry);
                let n = carry.len().min(self.buf.len());
                self.buf[..n].copy_from_slice(&carry[..n]);
                if let After::Close = self.consume(i, n, now_ns()) {
                    self.close(i, false);
                }
            }
        }
    }

    /// Reads socket `i` until it has nothing more.
    fn read(&mut self, i: usize) -> After {
        loop {
            let Some(conn) = self.conns[i].as_mut() else { return After::Open };
            let k = conn.carry.len();
            self.buf[..k].copy_from_slice(&conn.carry);
            let space = self.buf.len() - k;
            match read_stamped(&conn.stream, &mut self.buf[k..], &mut self.cmsg) {
                Ok((0, _)) => return After::Close,
                Ok((n, arrived)) => {
                    // One clock read per read: the read lag's and every frame's latency.
                    let now = now_ns();
                    if let Some(arrived) = arrived {
                        let _ = self.read_lag.record((now.saturating_sub(arrived) / 1000).max(1));
                    }
                    conn.carry.clear();
                    self.counts.reads += 1;
                    self.counts.bytes += n as u64;
                    if let After::Close = self.consume(i, k + n, now) {
                        return After::Close;
                    }
                    // A short read emptied the socket: the next data brings a new edge.
                    if n < space {
                        return After::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return After::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return After::Close,
            }
        }
    }

    /// Handles the frames in `buf[..end]` for connection `i`, read at `now` (Unix ns); keeps an
    /// incomplete tail.
    fn consume(&mut self, i: usize, end: usize, now: u64) -> After {
        let Some(conn) = self.conns[i].as_mut() else { return After::Open };
        let Conn { next, channel, pusher, mask, .. } = conn;
        let (channel, pusher) = (*channel, *pusher);
        let c = &mut self.counts;
        let latency = &mut self.latency;
        let out = &mut self.out;
        let mut closing = false;
        let inflater = &mut self.inflater;
        let scanned = frames::scan(&self.buf[..end], |opcode, compressed, payload| match opcode {
            1 | 2 => match frames::find_probe(inflated(inflater, compressed, payload)) {
                Some(p) => on_probe(c, latency, next, channel, now, &p),
                None => {
                    c.other += 1;
                    if pusher && memchr::memmem::find(payload, b"\"pusher:ping\"").is_some() {
                        *mask = next_mask(*mask);
                        out.extend_from_slice(&corecast::protocol::frame::encode_client(
                            true,
                            1,
                            br#"{"event":"pusher:pong","data":{}}"#,
                            mask.to_ne_bytes(),
                        ));
                        c.pongs += 1;
                    }
                }
            },
            9 => {
                *mask = next_mask(*mask);
                out.extend_from_slice(&corecast::protocol::frame::encode_client(
                    true,
                    10,
                    payload,
                    mask.to_ne_bytes(),
                ));
                c.pongs += 1;
            }
            8 => {
                if !closing {
                    *mask = next_mask(*mask);
                    let code = payload.get(..2).unwrap_or(&[0x03, 0xe8]);
                    out.extend_from_slice(&corecast::protocol::frame::encode_client(
                        true,
                        8,
                        code,
                        mask.to_ne_bytes(),
                    ));
                }
                closing = true;
            }
            _ => {}
        });
        if !self.out.is_empty() {
            // Control replies are tiny and rare: a socket that does not take them is lost anyway.
            let _ = conn.stream.write_all(&self.out);
            self.out.clear();
        }
        match scanned {
            Ok(used) => {
                if used < end {
                    conn.carry.extend_from_slice(&self.buf[used..end]);
                }
                if closing { After::Close } else { After::Open }
            }
            Err(_) => {
                self.shared.protocol_errors.fetch_add(1, Ordering::Relaxed);
                After::Close
            }
        }
    }

    /// Drops connection `i`; with `say_goodbye`, sends a close frame first.
    fn close(&mut self, i: usize, say_goodbye: bool) {
        let Some(mut conn) = self.conns[i].take() else { return };
        if say_goodbye {
            let mask = next_mask(conn.mask);
            let frame =
                corecast::protocol::frame::encode_client(true, 8, &1000u16.to_be_bytes(), mask.to_ne_bytes());
            let _ = conn.stream.write_all(&frame);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.free.push(i);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.closed.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&mut self) {
        let s = &self.shared;
        let c = &self.counts;
        s.deliveries.store(c.deliveries, Ordering::Relaxed);
        s.other_messages.store(c.other, Ordering::Relaxed);
        s.seq_gaps.store(c.gaps, Ordering::Relaxed);
        s.out_of_order.store(c.out_of_order, Ordering::Relaxed);
        s.misrouted.store(c.misrouted, Ordering::Relaxed);
        s.reads.store(c.reads, Ordering::Relaxed);
        s.bytes.store(c.bytes, Ordering::Relaxed);
        s.pongs_sent.store(c.pongs, Ordering::Relaxed);
        s.cpu_us.store(thread_cpu_us(), Ordering::Relaxed);
        hand_over(&mut self.latency, &s.latency);
        hand_over(&mut self.read_lag, &s.read_lag);
    }
}

/// Adds `h` to `shared` and empties it.
fn hand_over(h: &mut Histogram<u64>, shared: &Mutex<Option<Histogram<u64>>>) {
    if h.is_empty() {
        return;
    }
    let mut shared = shared.lock().unwrap();
    match shared.as_mut() {
        Some(s) => {
            let _ = s.add(&*h);
        }
        None => *shared = Some(h.clone()),
    }
    h.reset();
}

/// Reads into `buf`; also returns when the newest segment read arrived (Unix ns), if the
/// kernel said.
fn read_stamped(s: &TcpStream, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let m = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty()).map_err(io::Error::from)?;
    let mut arrived = None;
    for c in m.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmTimestampns(t) = c {
            arrived = u64::try_from(Duration::from(t).as_nanos()).ok();
        }
    }
    Ok((m.bytes, arrived))
}

/// The message a data frame carries: `payload`, inflated when it arrived compressed (an empty
/// message if it does not inflate: it then carries no probe and counts as other).
fn inflated<'a>(inflater: &'a mut InflateMemo, compressed: bool, payload: &'a [u8]) -> &'a [u8] {
    if compressed { inflater.inflate(payload, frames::MAX_FRAME).unwrap_or_default() } else { payload }
}

/// Scans `buf` (whole frames) `rounds` times with the receive loop's per-frame work — find
/// the probe, record the latency, check the sequence — and returns the deliveries counted:
/// the parsing cost alone, without sockets.
pub fn parse_only(buf: &[u8], rounds: usize) -> u64 {
    let mut c = Counts::default();
    let mut latency = hist();
    let mut next = vec![0u32; 1];
    for _ in 0..rounds {
        let now = now_ns();
        next[0] = 0;
        let _ = frames::scan(buf, |opcode, _, payload| {
            if let (1 | 2, Some(p)) = (opcode, frames::find_probe(payload)) {
                on_probe(&mut c, &mut latency, &mut next, 0, now, &p);
            }
        });
    }
    c.deliveries
}

#[inline]
fn on_probe(
    c: &mut Counts,
    latency: &mut Histogram<u64>,
    next: &mut [u32],
    channel: u16,
    now: u64,
    p: &Probe,
) {
    c.deliveries += 1;
    let _ = latency.record((now.saturating_sub(p.sent_ns) / 1000).max(1));
    let Some(slot) = next.get_mut(usize::from(p.publisher)) else {
        c.misrouted += 1;
        return;
    };
    if p.channel != channel {
        c.misrouted += 1;
    }
    let expect = *slot;
    if expect == 0 || p.seq == expect {
        *slot = p.seq.wrapping_add(1);
    } else if p.seq > expect {
        c.gaps += u64::from(p.seq - expect);
        *slot = p.seq.wrapping_add(1);
    } else {
        c.out_of_order += 1;
    }
}

fn next_mask(x: u32) -> u32 {
    // xorshift: masks need not be secret here, only present.
    let mut x = x;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_checks_count_gaps_and_reordering_per_publisher() {
        let mut c = Counts::default();
        let mut h = hist();
        let mut next = vec![0u32; 2];
        let p = |publisher, seq| Probe { sent_ns: 1, channel: 5, publisher, seq };
        for (publisher, seq) in [(0, 7), (0, 8), (1, 1), (0, 11), (0, 9), (1, 2), (2, 1)] {
            on_probe(&mut c, &mut h, &mut next, 5, 2_000, &p(publisher, seq));
        }
        assert_eq!(c.deliveries, 7);
        assert_eq!(c.gaps, 2, "9 and 10 skipped before 11");
        assert_eq!(c.out_of_order, 1, "9 after 11");
        assert_eq!(c.misrouted, 1, "publisher 2 does not exist");
        on_probe(
            &mut c,
            &mut h,
            &mut next,
            5,
            2_000,
            &Probe { sent_ns: 1, channel: 6, publisher: 1, seq: 3 },
        );
        assert_eq!(c.misrouted, 2, "channel 6 on a channel-5 connection");
        assert_eq!(h.len(), 8);
    }

    /// The read lag rests on the kernel's arrival time: it must come with the read, in the
    /// same (Unix) clock as `now_ns`, between the send and the read.
    #[test]
    fn a_read_returns_the_kernel_arrival_time_of_its_data() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        setsockopt(&server, sockopt::ReceiveTimestampns, &true).unwrap();
        let server = TcpStream::from_std(server);
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!(TimeSpec);
        // The first socket asking for timestamps turns them on for the whole stack a moment
        // later (the kernel defers it to a work queue): until then data arrives unstamped.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (before, arrived, after) = loop {
            let before = now_ns();
            client.write_all(b"hello").unwrap();
            let (n, arrived) = read_stamped(&server, &mut buf, &mut cmsg).unwrap();
            let after = now_ns();
            assert_eq!(&buf[..n], b"hello");
            if let Some(arrived) = arrived {
                break (before, arrived, after);
            }
            assert!(Instant::now() < deadline, "no read came with the kernel's arrival time");
        };
        assert!(before <= arrived && arrived <= after, "arrival {arrived} outside [{before}, {after}]");
        // Without the option the read works and says nothing of arrival.
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (plain, _) = listener.accept().unwrap();
        client.write_all(b"again").unwrap();
        let plain = TcpStream::from_std(plain);
        let (n, arrived) = read_stamped(&plain, &mut buf, &mut cmsg).unwrap();
        assert_eq!(&buf[..n], b"again");
        assert_eq!(arrived, None);
    }
}
