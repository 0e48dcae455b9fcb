//! `corecast-tls-idle`: holds N idle WebSocket connections, over TLS (`wss://`) or plain, and
//! reports the server's RSS growth per connection at each step. A benchmark, not a test.
//!
//! Each connection is made from 127.0.0.11, .12, … (5,000 per address, IP_BIND_ADDRESS_NO_PORT),
//! completes a TLS handshake (rustls client, ring, trusting `--ca`, ALPN http/1.1), upgrades on
//! `--path`, and, with `--subscribe`, becomes a Pusher connection subscribed to one channel.
//! Then it stays idle. Per connection = (server VmRSS − VmRSS before the first connection) ÷
//! open connections, read from /proc/PID/status after `--settle` seconds at each step.
//!
//! `corecast-tls-idle --server 127.0.0.1:6443 --pid PID --ca ca.pem --steps 1000,5000,15000`

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[derive(Parser)]
#[command(
    name = "corecast-tls-idle",
    about = "Idle wss:// (or ws://) connections and the server's RSS per connection"
)]
struct Args {
    /// Server address (host:port).
    #[arg(long)]
    server: SocketAddr,
    /// The server's process id (its RSS is read from /proc).
    #[arg(long)]
    pid: u32,
    /// PEM CA certificate the server's certificate chains to; without it, plain ws://.
    #[arg(long)]
    ca: Option<String>,
    /// Name the server's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Connection counts at which to measure, ascending.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,15000")]
    steps: Vec<usize>,
    /// Seconds to wait at each step before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// WebSocket path (with --subscribe: a Pusher /app/KEY path).
    #[arg(long, default_value = "/echo")]
    path: String,
    /// Subscribe each connection to one Pusher channel (`idle-N`, N = connection % 100).
    #[arg(long)]
    subscribe: bool,
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &mut **s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server runs");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn tcp(server: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let octet = 11 + (i / 5000) as u8;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
        .map_err(std::io::Error::from)?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, octet), 0)).into())?;
    sock.connect_timeout(&server.into(), Duration::from_secs(5))?;
    sock.set_tcp_nodelay(true)?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Reads until `needle` has arrived (bytes after it are dropped: nothing else is expected).
fn read_until(io: &mut dyn ReadWrite, needle: &[u8]) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = io.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed before {:?}", String::from_utf8_lossy(needle)));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}

fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn open(args: &Args, tls: Option<&Arc<ClientConfig>>, i: usize) -> Result<Conn, String> {
    let s = tcp(args.server, i).map_err(|e| e.to_string())?;
    let mut conn = match tls {
        None => Conn::Plain(s),
        Some(cfg) => {
            let name = ServerName::try_from(args.name.clone()).map_err(|e| e.to_string())?;
            let c = ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
            let mut st = StreamOwned::new(c, s);
            while st.conn.is_handshaking() {
                st.conn.complete_io(&mut st.sock).map_err(|e| format!("TLS handshake: {e}"))?;
            }
            Conn::Tls(Box::new(st))
        }
    };
    let io = conn.io();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        args.path, args.name
    );
    io.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let head = read_until(io, b"\r\n\r\n")?;
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!("upgrade refused: {}", String::from_utf8_lossy(&head)));
    }
    if args.subscribe {
        if !head.windows(22).any(|w| w == b"connection_established") {
            read_until(io, b"connection_established")?;
        }
        let sub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"idle-{}"}}}}"#, i % 100);
        io.write_all(&masked_text(sub.as_bytes())).map_err(|e| e.to_string())?;
        read_until(io, b"subscription_succeeded")?;
    }
    Ok(conn)
}

fn main() {
    let args = Args::parse();
    let tls = args.ca.as_ref().map(|ca| {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("--ca is a PEM file") {
            roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg.resumption = rustls::client::Resumption::disabled();
        Arc::new(cfg)
    });
    let base = rss(args.pid);
    let mut conns: Vec<Conn> = Vec::new();
    let started = Instant::now();
    println!(
        "# {} idle connections to {}{}, server pid {}, baseline RSS {} B",
        if tls.is_some() { "wss://" } else { "ws://" },
        args.server,
        args.path,
        args.pid,
        base
    );
    println!("| connections | server RSS | RSS growth per connection | connect time |");
    println!("|---:|---:|---:|---:|");
    for &step in &args.steps {
        let t = Instant::now();
        while conns.len() < step {
            let i = conns.len();
            match open(&args, tls.as_ref(), i) {
                Ok(c) => conns.push(c),
                Err(e) => {
                    eprintln!("connection {i} failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        let connect = t.elapsed();
        std::thread::sleep(Duration::from_secs_f64(args.settle));
        let now = rss(args.pid);
        let per = (now as f64 - base as f64) / conns.len() as f64;
        println!(
            "| {} | {:.1} MiB | {:.0} B | {:.1} s |",
            conns.len(),
            now as f64 / (1 << 20) as f64,
            per,
            connect.as_secs_f64()
        );
    }
    eprintln!("done in {:.1} s; closing", started.elapsed().as_secs_f64());
}
