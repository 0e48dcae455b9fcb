//! `TlsSocket` over a fake socket against a rustls client driven in-process: handshakes, records
//! split across reads, records larger than the reader's buffer, partial writes and the tail,
//! close_notify both ways, refusals, and the engine running echo over it.

use std::io::{IoSlice, Read, Write as _};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::client::{ClientConfig, ClientConnection};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ServerConfig;
use rustls::{RootCertStore, SupportedProtocolVersion};

use super::{BATCH, TlsSocket};
use crate::core::io::Socket;
use crate::core::testing::{FakeSocket, State};

struct Pki {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: RootCertStore,
}

/// A root CA and a leaf for `localhost` it signed (ECDSA P-256).
fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki { chain: vec![leaf.der().clone()], key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(), roots }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side as corecast configures it (see `config::tls`): ALPN http/1.1, no resumption.
fn server_config(pki: &Pki) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Arc::new(cfg)
}

fn client_config(pki: &Pki, version: &'static SupportedProtocolVersion, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A rustls client at the other end of a fake socket.
struct Client {
    sock: FakeSocket,
    conn: ClientConnection,
    /// Plaintext the client received.
    got: Vec<u8>,
}

/// A `TlsSocket` over a fake socket, and the client at the other end.
struct Peer {
    server: TlsSocket<FakeSocket>,
    c: Client,
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

impl Client {
    fn new(pki: &Pki, version: &'static SupportedProtocolVersion, alpn: &[&[u8]]) -> Client {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(client_config(pki, version, alpn), name).unwrap();
        Client { sock: FakeSocket::default(), conn, got: Vec::new() }
    }

    /// The client's pending records, as one byte string.
    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Moves the client's records into the server's socket; returns how many bytes.
    fn send_to_server(&mut self) -> usize {
        let out = self.output();
        self.sock.push_input(&out);
        out.len()
    }

    /// Moves what the server wrote to the client; returns how many bytes.
    fn send_to_client(&mut self) -> usize {
        let out = self.sock.take();
        let mut rd = &out[..];
        while !rd.is_empty() {
            self.conn.read_tls(&mut rd).unwrap();
            self.conn.process_new_packets().unwrap();
            self.drain();
        }
        out.len()
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }

    fn sends(&mut self, data: &[u8]) {
        self.conn.writer().write_all(data).unwrap();
    }

    /// The server's close_notify arrived (the client's reader is at its end).
    fn saw_close_notify(&mut self) -> bool {
        matches!(self.conn.reader().read(&mut [0u8; 8]), Ok(0))
    }
}

impl Peer {
    fn new(version: &'static SupportedProtocolVersion) -> Peer {
        Peer::with_alpn(version, &[b"http/1.1"])
    }

    fn with_alpn(version: &'static SupportedProtocolVersion, alpn: &[&[u8]]) -> Peer {
        let pki = pki();
        let c = Client::new(&pki, version, alpn);
        let server = TlsSocket::new(c.sock.clone(), server_config(&pki)).unwrap();
        Peer { server, c }
    }

    /// One server read with a buffer of `len` bytes.
    fn read(&mut self, len: usize) -> Poll<std::io::Result<Vec<u8>>> {
        let mut buf = vec![0u8; len];
        self.server.poll_read(&mut cx(), &mut buf).map(|r| r.map(|n| buf[..n].to_vec()))
    }

    /// Everything the server can read now, in reads of `len` bytes.
    fn read_all(&mut self, len: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while let Poll::Ready(r) = self.read(len) {
            let bytes = r.unwrap();
            if bytes.is_empty() {
                break;
            }
            all.extend_from_slice(&bytes);
        }
        all
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            self.c.send_to_server();
            assert!(self.read(64 * 1024).is_pending(), "no plaintext during the handshake");
            self.c.send_to_client();
            if !self.c.conn.is_handshaking() && !self.server.conn.is_handshaking() {
                return;
            }
        }
        panic!("the handshake did not complete");
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn handshake_then_data_both_ways_with_tls13_and_tls12() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut p = Peer::new(version);
        p.handshake();
        assert_eq!(p.c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(p.c.conn.protocol_version(), Some(version.version));
        p.c.sends(b"GET / HTTP/1.1\r\n\r\n");
        p.c.send_to_server();
        assert_eq!(p.read_all(64 * 1024), b"GET / HTTP/1.1\r\n\r\n");
        let n =
            p.server.send_vectored(&[IoSlice::new(b"HTTP/1.1 200 OK\r\n"), IoSlice::new(b"\r\n")]).unwrap();
        assert_eq!(n, 19);
        p.c.send_to_client();
        assert_eq!(p.c.got, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(p.server.incoming.is_none() && p.server.tail.capacity() == 0, "idle: no buffers");
    }
}

#[test]
fn records_split_across_reads_wait_until_complete() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    let data = pattern(40_000);
    p.c.sends(&data);
    let wire = p.c.output();
    let mut got = Vec::new();
    // Byte by byte for the first record, then in odd-sized pieces.
    let mut at = 0;
    while at < wire.len() {
        let step = if at < 20_000 { 1 } else { 997 };
        let end = (at + step).min(wire.len());
        p.c.sock.push_input(&wire[at..end]);
        at = end;
        match p.read(64 * 1024) {
            Poll::Ready(r) => got.extend_from_slice(&r.unwrap()),
            Poll::Pending => {
                assert!(at < wire.len(), "all records arrived but not all plaintext came out");
                assert!(p.server.incoming.as_ref().is_some_and(|i| !i.cipher.is_empty()));
            }
        }
    }
    assert_eq!(got, data);
    assert!(p.server.incoming.is_none(), "nothing kept once every record is complete");
}

#[test]
fn a_record_larger_than_the_readers_buffer_is_kept_until_read() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    let data = pattern(16 * 1024);
    p.c.sends(&data);
    p.c.send_to_server();
    let mut got = Vec::new();
    for _ in 0..20 {
        match p.read(1000) {
            Poll::Ready(r) => {
                let piece = r.unwrap();
                assert!(!piece.is_empty() && piece.len() <= 1000);
                got.extend_from_slice(&piece);
            }
            Poll::Pending => break,
        }
    }
    assert_eq!(got, data);
    assert!(p.server.incoming.is_none());
}

#[test]
fn a_partial_write_keeps_the_ciphertext_tail_and_reports_the_plaintext_taken() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    let frames: Vec<Vec<u8>> = (0..5).map(|i| vec![b'a' + i as u8; 10_000]).collect();
    let bufs: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
    p.c.sock.set_room(Some(1000));
    let sends = p.c.sock.0.borrow().sends;
    // All 50,000 bytes are encrypted (four records) and taken; 1,000 bytes of ciphertext left.
    assert_eq!(p.server.send_vectored(&bufs).unwrap(), 50_000);
    assert_eq!(p.c.sock.0.borrow().sends - sends, 2, "one send, then one to register for writability");
    assert!(p.server.tail.len() > 49_000);
    // While the tail remains, nothing more is taken.
    let err = p.server.send_vectored(&[IoSlice::new(b"later")]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    assert!(p.server.poll_write(&mut cx(), b"later").is_pending());
    // Writable again: the tail goes first, then the new frame.
    p.c.sock.set_room(None);
    assert!(matches!(p.server.poll_write(&mut cx(), b"later"), Poll::Ready(Ok(5))));
    p.c.send_to_client();
    let mut want: Vec<u8> = frames.concat();
    want.extend_from_slice(b"later");
    assert_eq!(p.c.got, want, "every byte once, in order");
    assert_eq!(p.server.tail.capacity(), 0);
}

#[test]
fn more_than_a_batch_is_taken_a_batch_at_a_time_in_full_records() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    let data = pattern(3 * BATCH);
    let sends = p.c.sock.0.borrow().sends;
    let mut at = 0;
    while at < data.len() {
        let n = p.server.send_vectored(&[IoSlice::new(&data[at..])]).unwrap();
        assert_eq!(n, BATCH.min(data.len() - at));
        at += n;
    }
    assert_eq!(p.c.sock.0.borrow().sends - sends, 3, "one send per batch");
    let wire = p.c.sock.take();
    // Four 16 KiB records per batch, 22 bytes of overhead each in TLS 1.3.
    assert_eq!(wire.len(), data.len() + 12 * 22);
    p.c.sock.0.borrow_mut().output = wire;
    p.c.send_to_client();
    assert_eq!(p.c.got, data);
}

#[test]
fn regression_a_tail_left_by_the_last_write_goes_out_when_the_task_runs() {
    // Everything offered was taken, so the engine does not wait for writability: the socket
    // must write its tail by itself when the task is woken.
    let mut p = Peer::new(&rustls::version::TLS12);
    p.handshake();
    p.c.sock.set_room(Some(10));
    assert_eq!(p.server.send_vectored(&[IoSlice::new(b"the last frame for a while")]).unwrap(), 26);
    assert!(!p.server.tail.is_empty());
    p.c.sock.set_room(None);
    assert!(p.read(1024).is_pending(), "nothing to read");
    assert!(p.server.tail.is_empty());
    p.c.send_to_client();
    assert_eq!(p.c.got, b"the last frame for a while");
}

#[test]
fn close_notify_from_the_peer_ends_the_stream_after_the_data() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    p.c.sends(b"bye");
    p.c.conn.send_close_notify();
    p.c.send_to_server();
    assert_eq!(p.read_all(1024), b"bye");
    assert!(matches!(p.read(1024), Poll::Ready(Ok(ref b)) if b.is_empty()), "end of stream");
    assert!(matches!(p.read(1024), Poll::Ready(Ok(ref b)) if b.is_empty()), "and it stays ended");
}

#[test]
fn shutdown_sends_close_notify_after_the_tail_then_shuts_the_socket() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    p.c.sock.set_room(Some(5));
    assert_eq!(p.server.send_vectored(&[IoSlice::new(b"close frame")]).unwrap(), 11);
    p.server.shutdown_write().unwrap();
    assert!(!p.c.sock.0.borrow().shut_down, "not before the tail is written");
    p.c.sock.set_room(None);
    assert!(p.read(1024).is_pending());
    assert!(p.c.sock.0.borrow().shut_down);
    p.c.send_to_client();
    assert_eq!(p.c.got, b"close frame");
    assert!(p.c.saw_close_notify());
}

#[test]
fn plain_http_on_the_tls_port_fails_with_an_alert() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.c.sock.push_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    match p.read(1024) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
        other => panic!("expected a failure, got {other:?}"),
    }
    let out = p.c.sock.take();
    assert_eq!(out.first(), Some(&0x15), "an alert record: {out:?}");
}

#[test]
fn a_client_without_http11_in_its_alpn_is_refused() {
    let mut p = Peer::with_alpn(&rustls::version::TLS13, &[b"h2"]);
    p.c.send_to_server();
    assert!(matches!(p.read(1024), Poll::Ready(Err(_))));
    let out = p.c.sock.take();
    let mut rd = &out[..];
    p.c.conn.read_tls(&mut rd).unwrap();
    let err = p.c.conn.process_new_packets().unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}

#[test]
fn writing_before_the_handshake_is_an_error() {
    let mut p = Peer::new(&rustls::version::TLS13);
    let err = p.server.send_vectored(&[IoSlice::new(b"too early")]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
}

#[test]
fn an_idle_connection_keeps_no_buffers_after_a_burst() {
    let mut p = Peer::new(&rustls::version::TLS13);
    p.handshake();
    let data = pattern(64 * 1024);
    p.c.sends(&data);
    p.c.send_to_server();
    assert_eq!(p.read_all(64 * 1024).len(), data.len());
    p.c.sock.set_room(Some(3000));
    assert_eq!(p.server.send_vectored(&[IoSlice::new(&data)]).unwrap(), data.len());
    p.c.sock.set_room(None);
    assert!(p.read(64 * 1024).is_pending());
    p.c.send_to_client();
    assert_eq!(p.c.got, data);
    assert!(p.server.incoming.is_none());
    assert_eq!(p.server.tail.capacity(), 0);
}

mod engine {
    //! The engine running echo over `TlsSocket`: the HTTP and WebSocket phases and the write
    //! path see plaintext; a peer that reads slowly gets everything, in order.

    use super::*;
    use crate::core::Core;
    use crate::core::conn::ConnKey;
    use crate::core::tests::{Nothing, core};

    fn accept_tls(core: &mut Core<Nothing>) -> (ConnKey, Client) {
        let pki = pki();
        let c = Client::new(&pki, &rustls::version::TLS13, &[b"http/1.1"]);
        let server = TlsSocket::new(c.sock.clone(), server_config(&pki)).unwrap();
        (core.accept(Box::new(server), false), c)
    }

    /// Runs the connection and moves records both ways until nothing moves.
    fn run(core: &mut Core<Nothing>, key: ConnKey, c: &mut Client) -> State {
        let mut state = State::Reading;
        for _ in 0..50 {
            let moved = c.send_to_server();
            state = core.run_conn(key, &c.sock);
            if c.send_to_client() == 0 && moved == 0 {
                break;
            }
        }
        state
    }

    const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        crate::protocol::decoder::tests_support::client_frame(true, opcode, payload, [1, 2, 3, 4])
    }

    #[test]
    fn echo_over_tls_with_a_slow_reader_and_a_clean_close() {
        let mut core = core();
        let (key, mut c) = accept_tls(&mut core);
        c.sends(UPGRADE.as_bytes());
        assert_eq!(run(&mut core, key, &mut c), State::Reading);
        let head = String::from_utf8_lossy(&c.got).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
        c.got.clear();

        // A 60,000-byte message echoed to a peer whose socket takes 3,000 bytes at a time.
        let payload = pattern(60_000);
        c.sends(&masked(2, &payload));
        for _ in 0..200 {
            c.sock.set_room(Some(3000));
            c.send_to_server();
            core.run_conn(key, &c.sock);
            c.send_to_client();
            if c.got.len() >= payload.len() + 4 {
                break;
            }
        }
        c.sock.set_room(None);
        assert_eq!(&c.got[..4], &[0x82, 126, 0xea, 0x60]);
        assert!(c.got[4..] == payload[..], "the echo arrives whole and in order");
        c.got.clear();

        // Close: our close frame answers theirs, then close_notify, then the FIN.
        c.sends(&masked(8, &1000u16.to_be_bytes()));
        run(&mut core, key, &mut c);
        assert_eq!(c.got, [0x88, 2, 0x03, 0xe8]);
        assert!(c.sock.0.borrow().shut_down);
        assert!(c.saw_close_notify());
        c.conn.send_close_notify();
        c.send_to_server();
        assert_eq!(core.run_conn(key, &c.sock), State::Gone);
    }
}
