//! A lean WebSocket client: connect from a chosen source address, handshake, masked frames out,
//! unmasked frames in. Per connection it keeps the stream and, only while a frame is incomplete,
//! the bytes of that frame.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use nix::sys::socket::{setsockopt, sockopt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Why a connection attempt failed, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Failure {
    Refused,
    Reset,
    Timeout,
    /// The HTTP answer was not 101 (the status code).
    Http(u16),
    /// A Pusher `pusher:error` or close before `connection_established`.
    Pusher(u16),
    Other,
}

impl Failure {
    pub fn name(&self) -> String {
        match self {
            Failure::Refused => "refused".into(),
            Failure::Reset => "reset".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Http(s) => format!("http_{s}"),
            Failure::Pusher(c) => format!("pusher_{c}"),
            Failure::Other => "other".into(),
        }
    }

    pub fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
                Failure::Reset
            }
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Other,
        }
    }
}

pub struct Ws {
    stream: TcpStream,
    partial: Vec<u8>,
    mask_seed: u32,
}

/// A frame received: opcode and payload.
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub async fn connect(server: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        setsockopt(&sock, sockopt::IpBindAddressNoPort, &true).map_err(io::Error::from)?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))?;
    }
    sock.set_nodelay(true)?;
    let stream = sock.connect(server).await?;
    Ok(stream)
}

impl Ws {
    /// Performs the opening handshake on `stream` for `path`.
    /// With `deflate`, offers permessage-deflate without context takeover.
    pub async fn handshake(
        mut stream: TcpStream,
        host: &str,
        path: &str,
        seed: u32,
        deflate: bool,
    ) -> Result<Ws, Failure> {
        let ext = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
             server_no_context_takeover\r\n"
        } else {
            ""
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        );
        stream.write_all(req.as_bytes()).await.map_err(|e| Failure::from_io(&e))?;
        let mut ws = Ws { stream, partial: Vec::new(), mask_seed: seed | 1 };
        let head_end = loop {
            if let Some(pos) = ws.partial.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if ws.partial.len() > 8192 {
                return Err(Failure::Other);
            }
            match ws.fill().await {
                Ok(0) => return Err(Failure::Reset),
                Ok(_) => {}
                Err(e) => return Err(Failure::from_io(&e)),
            }
        };
        let status: u16 = std::str::from_utf8(&ws.partial[..head_end])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return Err(Failure::Http(status));
        }
        // Bytes after the head are the first frames.
        ws.partial.drain(..head_end);
        Ok(ws)
    }

    /// The stream and the bytes already read past what was consumed.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.partial)
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift: masks need not be secret here, only present.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_ne_bytes()
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mask = self.next_mask();
        let frame = corecast::protocol::frame::encode_client(true, opcode, payload, mask);
        self.stream.write_all(&frame).await
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(1, text.as_bytes()).await
    }

    /// Reads the next complete frame (None: the connection ended).
    pub async fn recv(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads what the socket has into `partial`; 0 at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            let got = SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let n = self.stream.try_read(&mut s)?;
                self.partial.extend_from_slice(&s[..n]);
                Ok::<usize, io::Error>(n)
            });
            match got {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        let b = &self.partial;
        if b.len() < 2 {
            return None;
        }
        let mut len = (b[1] & 0x7f) as usize;
        let mut off = 2;
        if len == 126 {
            if b.len() < 4 {
                return None;
            }
            len = u16::from_be_bytes([b[2], b[3]]) as usize;
            off = 4;
        } else if len == 127 {
            if b.len() < 10 {
                return None;
            }
            len = u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize;
            off = 10;
        }
        if b.len() < off + len {
            return None;
        }
        let frame = Frame { opcode: b[0] & 0x0f, payload: b[off..off + len].to_vec() };
        self.partial.drain(..off + len);
        if self.partial.is_empty() && self.partial.capacity() > 4096 {
            self.partial = Vec::new();
        }
        Some(frame)
    }

    /// Sends a close frame and waits briefly for the server's.
    pub async fn close(mut self) {
        let _ = self.send(8, &1000u16.to_be_bytes()).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while let Ok(Some(f)) = self.recv().await {
                if f.opcode == 8 {
                    break;
                }
            }
        })
        .await;
    }
}
