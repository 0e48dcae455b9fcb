//! The core driven without sockets: a fake `SocketIo` records what would have been sent.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::conn::{ConnKey, Phase, flag};
use super::io::SocketIo;
use super::{Core, Settings, TaskView};
use crate::config::Config;

#[derive(Default)]
struct Wire {
    sent: HashMap<i32, Vec<u8>>,
    /// Bytes each fd still takes before it would block (absent: unlimited).
    room: HashMap<i32, usize>,
}

#[derive(Clone, Default)]
struct FakeIo(Rc<RefCell<Wire>>);

impl SocketIo for FakeIo {
    fn send(&self, fd: i32, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.0.borrow_mut();
        let n = match w.room.get_mut(&fd) {
            Some(0) => return Err(std::io::ErrorKind::WouldBlock.into()),
            Some(room) => {
                let n = (*room).min(buf.len());
                *room -= n;
                n
            }
            None => buf.len(),
        };
        w.sent.entry(fd).or_default().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl FakeIo {
    fn take(&self, fd: i32) -> Vec<u8> {
        self.0.borrow_mut().sent.remove(&fd).unwrap_or_default()
    }
    fn take_text(&self, fd: i32) -> String {
        String::from_utf8_lossy(&self.take(fd)).into_owned()
    }
    fn block(&self, fd: i32) {
        self.0.borrow_mut().room.insert(fd, 0);
    }
}

fn core_with(cfg: Config) -> (Core, FakeIo) {
    let io = FakeIo::default();
    (Core::new(0, Settings::from_config(&cfg, 1), Box::new(io.clone()), 0), io)
}

fn core() -> (Core, FakeIo) {
    core_with(Config { echo: true, cores: 1, ..Config::default() })
}

fn feed(core: &mut Core, key: ConnKey, bytes: &[u8]) {
    let mut buf = bytes.to_vec();
    core.on_read(key, &mut buf);
}

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn open_echo(core: &mut Core, io: &FakeIo, fd: i32) -> ConnKey {
    let key = core.accept(fd);
    feed(core, key, UPGRADE.as_bytes());
    assert!(io.take_text(fd).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    key
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    crate::protocol::decoder::tests_support::client_frame(true, opcode, payload, [1, 2, 3, 4])
}

fn view(core: &mut Core, key: ConnKey) -> TaskView {
    core.task_view(key, std::task::Waker::noop())
}

#[test]
fn plain_get_root_and_ready_answer_200_and_keep_alive() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = io.take_text(3);
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert!(matches!(view(&mut core, key), TaskView::Read));
}

#[test]
fn unknown_path_is_404_and_garbage_is_400_then_close() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, b"GET /nope HTTP/1.1\r\n\r\n");
    assert!(io.take_text(3).starts_with("HTTP/1.1 404 "));
    feed(&mut core, key, b"\x16\x03\x01\x00\x00garbage\r\n\r\n");
    assert!(io.take_text(3).starts_with("HTTP/1.1 400 "));
    assert!(matches!(view(&mut core, key), TaskView::Linger { shut_down: false }));
}

#[test]
fn oversized_head_is_431_even_when_it_arrives_in_pieces() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, b"GET / HTTP/1.1\r\n");
    for _ in 0..10 {
        feed(&mut core, key, format!("X-Filler: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    assert!(io.take_text(3).starts_with("HTTP/1.1 431 "));
}

#[test]
fn websocket_path_without_upgrade_is_426() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = io.take_text(3);
    assert!(out.starts_with("HTTP/1.1 426 ") && out.contains("Upgrade: websocket\r\n"), "{out}");
    let key = core.accept(4);
    feed(&mut core, key, UPGRADE.replace("Version: 13", "Version: 7").as_bytes());
    let out = io.take_text(4);
    assert!(out.starts_with("HTTP/1.1 426 ") && out.contains("Sec-WebSocket-Version: 13\r\n"), "{out}");
}

#[test]
fn echo_echoes_text_binary_and_answers_ping() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    feed(&mut core, key, &masked(1, b"hi"));
    assert_eq!(io.take(3), vec![0x81, 2, b'h', b'i']);
    feed(&mut core, key, &masked(9, b"p"));
    assert_eq!(io.take(3), vec![0x8a, 1, b'p']);
    assert!(core.conn(key).unwrap().rx.is_none() && core.conn(key).unwrap().out.is_none());
}

#[test]
fn frames_sent_with_the_upgrade_request_are_decoded() {
    let (mut core, io) = core();
    let key = core.accept(3);
    let mut bytes = UPGRADE.as_bytes().to_vec();
    bytes.extend(masked(1, b"early"));
    feed(&mut core, key, &bytes);
    let out = io.take(3);
    assert!(out.ends_with(&[0x81, 5, b'e', b'a', b'r', b'l', b'y']));
}

#[test]
fn unmasked_frame_fails_with_1002_and_closes() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    feed(&mut core, key, &[0x81, 0x01, b'x']);
    assert_eq!(&io.take(3)[..4], &[0x88, 2 + "client frame is not masked".len() as u8, 0x03, 0xea]);
    assert!(matches!(view(&mut core, key), TaskView::Linger { .. }));
}

#[test]
fn peer_close_is_echoed_and_the_socket_closed() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    feed(&mut core, key, &masked(8, &[0x03, 0xe8]));
    assert_eq!(io.take(3), vec![0x88, 2, 0x03, 0xe8]);
    assert!(matches!(view(&mut core, key), TaskView::Linger { shut_down: false }));
}

#[test]
fn full_core_refuses_upgrades_with_503_before_any_websocket_state() {
    let (mut core, io) = core_with(Config { echo: true, cores: 1, max_connections: 1, ..Config::default() });
    open_echo(&mut core, &io, 3);
    let key = core.accept(4);
    feed(&mut core, key, UPGRADE.as_bytes());
    assert!(io.take_text(4).starts_with("HTTP/1.1 503 "));
    let conn = core.conn(key).unwrap();
    assert_eq!(conn.phase, Phase::Closing);
    assert!(!conn.has(flag::COUNTED));
    assert_eq!(core.ws_count(), 1);
    assert_eq!(core.stats.rejected_full, 1);
}

#[test]
fn handshake_timeout_kills_a_silent_or_trickling_client() {
    let (mut core, _io) = core();
    let key = core.accept(3);
    for t in 1..10 {
        feed(&mut core, key, b"G");
        core.tick(t);
        assert!(!matches!(view(&mut core, key), TaskView::Exit), "killed early at {t}");
    }
    core.tick(10);
    assert!(matches!(view(&mut core, key), TaskView::Exit));
    assert_eq!(core.stats.handshake_timeouts, 1);
}

#[test]
fn heartbeat_pings_an_idle_peer_and_closes_it_without_reply() {
    let cfg = Config { echo: true, cores: 1, activity_timeout: 5, pong_timeout: 3, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    core.tick(4);
    assert!(io.take(3).is_empty());
    core.tick(5);
    assert_eq!(io.take(3), vec![0x89, 0]);
    core.tick(7);
    assert!(matches!(view(&mut core, key), TaskView::Read));
    core.tick(8);
    let out = io.take(3);
    assert_eq!(&out[..2], &[0x88, 2 + "no reply to ping".len() as u8]);
    assert!(matches!(view(&mut core, key), TaskView::Linger { .. }));
    assert_eq!(core.stats.ping_timeouts, 1);
}

#[test]
fn heartbeat_keeps_a_peer_that_answers() {
    let cfg = Config { echo: true, cores: 1, activity_timeout: 5, pong_timeout: 3, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    for round in 0..3 {
        let base = round * 6;
        core.tick(base + 5);
        assert_eq!(io.take(3), vec![0x89, 0], "round {round}");
        core.tick(base + 6);
        feed(&mut core, key, &masked(10, b""));
    }
    // The last pong came at 18: the next ping is due at 23, not before.
    core.tick(22);
    assert!(io.take(3).is_empty());
    assert!(matches!(view(&mut core, key), TaskView::Read));
}

#[test]
fn activity_postpones_the_heartbeat() {
    let cfg = Config { echo: true, cores: 1, activity_timeout: 5, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    for t in 1..20 {
        core.tick(t);
        feed(&mut core, key, &masked(10, b""));
    }
    assert!(io.take(3).is_empty(), "no ping while the peer is active");
}

#[test]
fn drain_sends_1001_and_refuses_upgrades_and_ready() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    let http = core.accept(4);
    core.start_drain();
    let out = io.take(3);
    assert_eq!(&out[..4], &[0x88, 2 + "server shutting down".len() as u8, 0x03, 0xe9]);
    assert_eq!(core.conn(key).unwrap().phase, Phase::Closing);
    feed(&mut core, http, b"GET /ready HTTP/1.1\r\n\r\n");
    assert!(io.take_text(4).starts_with("HTTP/1.1 503 "));
    let late = core.accept(5);
    feed(&mut core, late, UPGRADE.as_bytes());
    assert!(io.take_text(5).starts_with("HTTP/1.1 503 "));
    // The peer answers our close: the socket closes.
    feed(&mut core, key, &masked(8, &[0x03, 0xe9]));
    assert!(matches!(view(&mut core, key), TaskView::Linger { .. }));
}

#[test]
fn drain_gives_up_on_silent_peers_at_the_drain_timeout() {
    let cfg = Config { echo: true, cores: 1, drain_timeout: 3, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    core.start_drain();
    core.tick(2);
    assert!(!matches!(view(&mut core, key), TaskView::Exit));
    core.tick(3);
    assert!(matches!(view(&mut core, key), TaskView::Exit));
}

#[test]
fn echo_stops_reading_when_its_peer_does_not_read() {
    let cfg = Config { echo: true, cores: 1, max_outbound_bytes: 1000, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    io.block(3);
    for _ in 0..3 {
        feed(&mut core, key, &masked(2, &[0; 400]));
    }
    assert!(matches!(view(&mut core, key), TaskView::Write(_)));
    assert!(core.conn(key).unwrap().has(flag::READ_PAUSED));
    // The task writes the queue out: reading resumes.
    while let TaskView::Write(front) = view(&mut core, key) {
        core.wrote(key, front.len());
    }
    assert!(!core.conn(key).unwrap().has(flag::READ_PAUSED));
}

#[test]
fn removal_frees_the_slot_and_the_count() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    assert_eq!(core.ws_count(), 1);
    core.remove(key);
    assert_eq!(core.ws_count(), 0);
    assert!(core.conn(key).is_none());
    // A new connection in the same slot is a different key.
    let again = core.accept(3);
    assert_eq!(again.idx, key.idx);
    assert_ne!(again, key);
    assert!(core.conn(key).is_none());
}

#[test]
fn idle_websocket_has_no_heap_state() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    feed(&mut core, key, &masked(1, b"x"));
    assert_eq!(core.conn(key).unwrap().heap_bytes(), 0);
}

#[test]
fn regression_no_frame_follows_our_close_frame() {
    let (mut core, io) = core();
    let key = open_echo(&mut core, &io, 3);
    core.close_ws(key, 1001, "bye");
    let closing = io.take(3);
    assert_eq!(closing[0], 0x88);
    core.send(key, crate::protocol::frame::encode(crate::protocol::frame::Opcode::Text, b"late"));
    assert!(io.take(3).is_empty(), "a data frame after the close frame");
}

#[test]
fn regression_cutting_a_slow_consumer_keeps_a_partly_written_frame() {
    use super::conn::Endpoint;
    let cfg = Config { echo: true, cores: 1, max_outbound_bytes: 100, ..Config::default() };
    let (mut core, io) = core_with(cfg);
    let key = open_echo(&mut core, &io, 3);
    core.conn_mut(key).unwrap().endpoint = Endpoint::Pusher;
    // The socket takes 5 bytes of the first frame, then nothing.
    io.0.borrow_mut().room.insert(3, 5);
    core.send(key, crate::protocol::frame::encode(crate::protocol::frame::Opcode::Text, &[b'a'; 60]));
    core.send(key, crate::protocol::frame::encode(crate::protocol::frame::Opcode::Text, &[b'b'; 60]));
    // Over budget: the unstarted frame is dropped, the started one is completed first.
    let TaskView::Write(front) = view(&mut core, key) else { panic!("queued output") };
    assert_eq!(front.len(), 62 - 5, "the rest of the partly written frame comes first");
    assert_eq!(core.stats.slow_consumers, 1);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, b"POST /ready HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(io.take_text(3), "HTTP/1.1 100 Continue\r\n\r\n");
    feed(&mut core, key, b"{}   ");
    let out = io.take_text(3);
    assert!(out.starts_with("HTTP/1.1 405 "), "the request is then handled: {out}");
    assert!(!out.contains("100 Continue"));
}

#[test]
fn with_echo_an_upgrade_on_root_is_the_echo_endpoint_and_plain_get_stays_200() {
    let (mut core, io) = core();
    let key = core.accept(3);
    feed(&mut core, key, UPGRADE.replace("GET /echo", "GET /").as_bytes());
    assert!(io.take_text(3).starts_with("HTTP/1.1 101 "));
    let key = core.accept(4);
    feed(&mut core, key, b"GET / HTTP/1.1\r\n\r\n");
    assert!(io.take_text(4).starts_with("HTTP/1.1 200 OK"));
}
