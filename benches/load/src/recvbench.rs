//! `recv-bench`: how many frames per second the subscribers' receive loop (`recv.rs`) consumes
//! on one core. An in-process sender floods pre-built server frames (each with a probe, numbered
//! per connection as a broadcast server's would be) over loopback sockets, `frames_per_write`
//! frames per write, into the very loop the workers run; a second figure times the per-frame
//! work alone on a buffer in memory.
//!
//! On loopback the sender's `send` runs the receiving socket's TCP input, so the receive
//! thread's CPU is what reading (the copy to user space) and parsing cost: frames per second of
//! receive-thread CPU is the loop's capacity on one core.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::coord::Common;
use crate::frames::{self, Probe};
use crate::procstat;
use crate::recv::{self, NewConn, Receiver};

pub struct Args {
    pub connections: usize,
    pub frames_per_write: usize,
    pub payload: usize,
    pub senders: usize,
    pub duration: f64,
}

/// A batch of `k` frames and where each frame's probe starts.
fn batch(k: usize, payload: usize) -> (Vec<u8>, Vec<usize>) {
    let p = Probe { sent_ns: 0, channel: 0, publisher: 0, seq: 0 };
    let frame = frames::server_frame(1, &frames::probe_text(&p, payload));
    let head = frame.len() - payload.max(frames::PROBE_LEN);
    let mut buf = Vec::with_capacity(frame.len() * k);
    let mut at = Vec::with_capacity(k);
    for _ in 0..k {
        at.push(buf.len() + head);
        buf.extend_from_slice(&frame);
    }
    (buf, at)
}

fn connect_pairs(
    common: &Common,
    n: usize,
) -> Result<(Vec<std::net::TcpStream>, Vec<std::net::TcpStream>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for i in 0..n {
        let ip = common.source_ips[i % common.source_ips.len()];
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| e.to_string())?;
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
            .map_err(|e| e.to_string())?;
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into()).map_err(|e| format!("bind {ip}: {e}"))?;
        sock.connect(&addr.into()).map_err(|e| format!("connect: {e}"))?;
        let (server, _) = listener.accept().map_err(|e| e.to_string())?;
        server.set_nodelay(true).map_err(|e| e.to_string())?;
        clients.push(std::net::TcpStream::from(sock));
        servers.push(server);
    }
    Ok((clients, servers))
}

pub fn run(common: &Common, a: &Args) -> Result<String, String> {
    if a.connections == 0 || a.connections > 9_000 {
        return Err("--connections must be 1 to 9,000 (both ends of each socket live in this process)".into());
    }
    let k = a.frames_per_write.max(1);
    // The per-frame work alone, on a full read buffer of frames.
    let (one, _) = batch(1, a.payload);
    let per_buf = recv::READ_BUF / one.len();
    let (mem, _) = batch(per_buf, a.payload);
    let t = Instant::now();
    let mut parsed = 0u64;
    while t.elapsed() < Duration::from_secs(1) {
        parsed += recv::parse_only(&mem, 20);
    }
    let parse_only_fps = parsed as f64 / t.elapsed().as_secs_f64();

    let (clients, servers) = connect_pairs(common, a.connections)?;
    let receiver = Receiver::start(1).map_err(|e| e.to_string())?;
    for c in clients {
        receiver.add(NewConn { stream: c, leftover: Vec::new(), channel: 0, pusher: false });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sender_cpu_us = Arc::new(AtomicU64::new(0));
    let senders = a.senders.clamp(1, 16);
    let mut groups: Vec<Vec<std::net::TcpStream>> = (0..senders).map(|_| Vec::new()).collect();
    for (i, s) in servers.into_iter().enumerate() {
        groups[i % senders].push(s);
    }
    let payload = a.payload;
    let threads: Vec<_> = groups
        .into_iter()
        .map(|mut socks| {
            let stop = stop.clone();
            let cpu = sender_cpu_us.clone();
            std::thread::spawn(move || {
                let (mut buf, at) = batch(k, payload);
                let mut seq = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let now = recv::now_ns();
                    for &off in &at {
                        seq = seq.wrapping_add(1);
                        frames::write_probe(
                            &mut buf[off..],
                            &Probe { sent_ns: now, channel: 0, publisher: 0, seq },
                        );
                    }
                    // The same bytes to every socket, as a broadcast server writes them.
                    for s in socks.iter_mut() {
                        if s.write_all(&buf).is_err() {
                            return;
                        }
                    }
                }
                cpu.fetch_add(recv::thread_cpu_us(), Ordering::Relaxed);
            })
        })
        .collect();
    let shared = receiver.shared().clone();
    let get = |f: &AtomicU64| f.load(Ordering::Relaxed);
    // Warm up, then measure.
    let warm_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm_until && get(&shared.deliveries) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let proc0 = procstat::cpu_ticks(std::process::id()).unwrap_or(0);
    let (d0, r0, c0, b0) =
        (get(&shared.deliveries), get(&shared.reads), get(&shared.cpu_us), get(&shared.bytes));
    let _ = shared.take_latency();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.duration.clamp(0.5, 30.0)));
    let (d1, r1, c1, b1) =
        (get(&shared.deliveries), get(&shared.reads), get(&shared.cpu_us), get(&shared.bytes));
    let secs = t0.elapsed().as_secs_f64();
    let proc1 = procstat::cpu_ticks(std::process::id()).unwrap_or(0);
    let latency = shared.take_latency();
    stop.store(true, Ordering::Relaxed);
    receiver.stop();
    for t in threads {
        let _ = t.join();
    }
    let frames = d1 - d0;
    let recv_cpu = (c1 - c0) as f64 / 1e6 / secs;
    let fps = frames as f64 / secs;
    let gaps = get(&shared.seq_gaps);
    let disorder = get(&shared.out_of_order) + get(&shared.misrouted);
    let figures = json!({
        "frames_per_second": fps.round(),
        "receive_thread_cpu_pct": (recv_cpu * 1000.0).round() / 10.0,
        "frames_per_receive_cpu_second": if recv_cpu > 0.0 { json!((fps / recv_cpu).round()) } else { Value::Null },
        "frames_per_read": if r1 > r0 { json!(((frames as f64 / (r1 - r0) as f64) * 100.0).round() / 100.0) } else { Value::Null },
        "megabytes_per_second": ((b1 - b0) as f64 / secs / 1e4).round() / 100.0,
        "process_cpu_pct": ((proc1 - proc0) as f64 / procstat::TICKS_PER_SEC / secs * 1000.0).round() / 10.0,
        "parse_only_frames_per_second": parse_only_fps.round(),
        "seq_gaps": gaps,
        "out_of_order_or_misrouted": disorder,
        "latency_while_flooded": latency.map(|h| crate::coord::percentiles(&h)).unwrap_or(Value::Null),
    });
    let params = json!({"connections": a.connections, "frames_per_write": k, "payload": a.payload,
        "senders": senders, "duration": a.duration});
    let doc = json!({"scenario": "recv-bench", "params": params, "figures": figures,
        "date": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()});
    std::fs::write(common.out.join("report.json"), serde_json::to_string_pretty(&doc).unwrap())
        .map_err(|e| e.to_string())?;
    let mut summary = format!("recv-bench ({})\nparams: {params}\n", common.out.display());
    for (k, v) in figures.as_object().unwrap() {
        summary.push_str(&format!("  {k}: {v}\n"));
    }
    std::fs::write(common.out.join("summary.txt"), &summary).map_err(|e| e.to_string())?;
    if gaps > 0 || disorder > 0 {
        return Err(format!("the receive loop miscounted a flood with no loss:\n{summary}"));
    }
    Ok(summary)
}
