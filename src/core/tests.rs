//! The engine driven without sockets: fake sockets record what would have been sent; a minimal
//! service answers 404 to everything it is asked.

use bytes::Bytes;

use super::conn::{ConnKey, Phase, flag};
use super::engine::{Engine, Settings};
use super::io::CoreId;
use super::service::{Goodbye, Outcome, Policy, Refusal, Service};
use super::testing::{FakeSocket, State};
use super::{Core, Flushed};
use crate::protocol::frame::Opcode;
use crate::protocol::http::{self, Request};

/// A service that serves nothing: the engine's own endpoints are under test.
pub(super) struct Nothing;

impl Service for Nothing {
    type Conn = ();
    type Peer = ();

    fn policy(&self) -> Policy {
        let bye = Goodbye { notice: None, code: 1001, reason: "bye" };
        Policy {
            ping: Bytes::from_static(&[0x89, 0]),
            pong_timeout: bye.clone(),
            draining: bye,
            slow_consumer: None,
            full: None,
        }
    }

    fn request(
        &mut self,
        _: &mut Engine<Self>,
        _: ConnKey,
        req: &Request<'_>,
        _: &[u8],
        _: bool,
    ) -> Outcome<()> {
        Outcome::Respond(http::text(404, "not found", &[], req.keep_alive()), req.keep_alive())
    }

    fn opened(&mut self, _: &mut Engine<Self>, _: ConnKey, _: Option<Refusal>) {}
    fn message(&mut self, _: &mut Engine<Self>, _: ConnKey, _: Opcode, _: &[u8]) {}
    fn closed(&mut self, _: &mut Engine<Self>, _: ConnKey) {}
    fn peer(&mut self, _: &mut Engine<Self>, _: ()) {}
    fn tick(&mut self, _: &mut Engine<Self>) {}
}

fn settings() -> Settings {
    Settings { echo: true, ..Settings::default() }
}

fn core_with(s: Settings) -> Core<Nothing> {
    Core::new(CoreId(0), s, Nothing, 0)
}

pub(super) fn core() -> Core<Nothing> {
    core_with(settings())
}

fn feed(core: &mut Core<Nothing>, key: ConnKey, sock: &FakeSocket, bytes: &[u8]) -> State {
    sock.push_input(bytes);
    core.run_conn(key, sock)
}

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn open_echo(core: &mut Core<Nothing>) -> (ConnKey, FakeSocket) {
    let (key, sock) = core.accept_fake();
    feed(core, key, &sock, UPGRADE.as_bytes());
    assert!(sock.take_text().starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    (key, sock)
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    crate::protocol::decoder::tests_support::client_frame(true, opcode, payload, [1, 2, 3, 4])
}

fn text_frame(payload: &[u8]) -> Bytes {
    crate::protocol::frame::encode(Opcode::Text, payload)
}

#[test]
fn plain_get_root_and_ready_answer_200_and_keep_alive() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    let state = feed(
        &mut core,
        key,
        &sock,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let out = sock.take_text();
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert_eq!(state, State::Reading);
}

#[test]
fn unknown_path_goes_to_the_service_and_garbage_is_400_then_close() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, b"GET /nope HTTP/1.1\r\n\r\n");
    assert!(sock.take_text().starts_with("HTTP/1.1 404 "));
    let state = feed(&mut core, key, &sock, b"\x16\x03\x01\x00\x00garbage\r\n\r\n");
    assert!(sock.take_text().starts_with("HTTP/1.1 400 "));
    assert_eq!(state, State::Lingering);
    assert!(sock.0.borrow().shut_down, "the write side is shut down after the last response");
    // The peer closes: the connection is removed.
    sock.close_input();
    assert_eq!(core.run_conn(key, &sock), State::Gone);
    assert_eq!(core.e.conn_count(), 0);
}

#[test]
fn oversized_head_is_431_even_when_it_arrives_in_pieces() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, b"GET / HTTP/1.1\r\n");
    for _ in 0..10 {
        feed(&mut core, key, &sock, format!("X-Filler: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    assert!(sock.take_text().starts_with("HTTP/1.1 431 "));
}

#[test]
fn websocket_path_without_upgrade_is_426() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = sock.take_text();
    assert!(out.starts_with("HTTP/1.1 426 ") && out.contains("Upgrade: websocket\r\n"), "{out}");
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, UPGRADE.replace("Version: 13", "Version: 7").as_bytes());
    let out = sock.take_text();
    assert!(out.starts_with("HTTP/1.1 426 ") && out.contains("Sec-WebSocket-Version: 13\r\n"), "{out}");
}

#[test]
fn echo_echoes_text_binary_and_answers_ping() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    feed(&mut core, key, &sock, &masked(1, b"hi"));
    assert_eq!(sock.take(), vec![0x81, 2, b'h', b'i']);
    feed(&mut core, key, &sock, &masked(9, b"p"));
    assert_eq!(sock.take(), vec![0x8a, 1, b'p']);
    let conn = core.e.conn(key).unwrap();
    assert!(conn.inbound.is_none() && conn.out.is_none());
}

#[test]
fn frames_sent_with_the_upgrade_request_are_decoded() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    let mut bytes = UPGRADE.as_bytes().to_vec();
    bytes.extend(masked(1, b"early"));
    feed(&mut core, key, &sock, &bytes);
    assert!(sock.take().ends_with(&[0x81, 5, b'e', b'a', b'r', b'l', b'y']));
}

#[test]
fn unmasked_frame_fails_with_1002_and_closes() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    let state = feed(&mut core, key, &sock, &[0x81, 0x01, b'x']);
    assert_eq!(&sock.take()[..4], &[0x88, 2 + "client frame is not masked".len() as u8, 0x03, 0xea]);
    assert_eq!(state, State::Lingering);
}

#[test]
fn peer_close_is_echoed_and_the_socket_closed() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    let state = feed(&mut core, key, &sock, &masked(8, &[0x03, 0xe8]));
    assert_eq!(sock.take(), vec![0x88, 2, 0x03, 0xe8]);
    assert_eq!(state, State::Lingering);
}

#[test]
fn full_core_refuses_upgrades_with_503_before_any_websocket_state() {
    let mut core = core_with(Settings { max_connections: 1, ..settings() });
    open_echo(&mut core);
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, UPGRADE.as_bytes());
    assert!(sock.take_text().starts_with("HTTP/1.1 503 "));
    let conn = core.e.conn(key).unwrap();
    assert_eq!(conn.phase, Phase::Closing);
    assert!(!conn.has(flag::COUNTED));
    assert_eq!(core.e.ws_count(), 1);
    assert_eq!(core.e.stats.rejected_full, 1);
}

#[test]
fn handshake_timeout_kills_a_silent_or_trickling_client() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    for t in 1..10 {
        feed(&mut core, key, &sock, b"G");
        core.tick(t, 0);
        assert_ne!(core.run_conn(key, &sock), State::Gone, "killed early at {t}");
    }
    core.tick(10, 0);
    assert_eq!(core.run_conn(key, &sock), State::Gone);
    assert_eq!(core.e.stats.handshake_timeouts, 1);
}

#[test]
fn heartbeat_pings_an_idle_peer_and_closes_it_without_reply() {
    let mut core = core_with(Settings { activity_timeout: 5, pong_timeout: 3, ..settings() });
    let (key, sock) = open_echo(&mut core);
    core.tick(4, 0);
    assert!(sock.take().is_empty());
    core.tick(5, 0);
    assert_eq!(sock.take(), vec![0x89, 0]);
    core.tick(7, 0);
    assert_eq!(core.run_conn(key, &sock), State::Reading);
    core.tick(8, 0);
    let out = sock.take();
    assert_eq!(&out[..2], &[0x88, 2 + "no reply to ping".len() as u8]);
    assert_eq!(core.run_conn(key, &sock), State::Lingering);
    assert_eq!(core.e.stats.ping_timeouts, 1);
}

/// Regression: the close timeout after a failed heartbeat was never filed (the deadline being
/// handled was the one on file), so a dead peer was kept until its TCP connection failed.
#[test]
fn regression_a_dead_peer_is_dropped_at_the_close_timeout_after_the_heartbeat() {
    let mut core =
        core_with(Settings { activity_timeout: 5, pong_timeout: 3, close_timeout: 2, ..settings() });
    let (key, sock) = open_echo(&mut core);
    core.tick(8, 0);
    assert_eq!(core.run_conn(key, &sock), State::Lingering);
    core.tick(9, 0);
    assert_eq!(core.run_conn(key, &sock), State::Lingering);
    core.tick(10, 0);
    assert_eq!(core.run_conn(key, &sock), State::Gone);
}

#[test]
fn heartbeat_keeps_a_peer_that_answers() {
    let mut core = core_with(Settings { activity_timeout: 5, pong_timeout: 3, ..settings() });
    let (key, sock) = open_echo(&mut core);
    for round in 0..3 {
        let base = round * 6;
        core.tick(base + 5, 0);
        assert_eq!(sock.take(), vec![0x89, 0], "round {round}");
        core.tick(base + 6, 0);
        feed(&mut core, key, &sock, &masked(10, b""));
    }
    // The last pong came at 18: the next ping is due at 23, not before.
    core.tick(22, 0);
    assert!(sock.take().is_empty());
    assert_eq!(core.run_conn(key, &sock), State::Reading);
}

#[test]
fn activity_postpones_the_heartbeat() {
    let mut core = core_with(Settings { activity_timeout: 5, ..settings() });
    let (key, sock) = open_echo(&mut core);
    for t in 1..20 {
        core.tick(t, 0);
        feed(&mut core, key, &sock, &masked(10, b""));
    }
    assert!(sock.take().is_empty(), "no ping while the peer is active");
}

#[test]
fn drain_sends_1001_and_refuses_upgrades_and_ready() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    let (http, http_sock) = core.accept_fake();
    core.start_drain();
    let out = sock.take();
    assert_eq!(&out[..4], &[0x88, 2 + "server shutting down".len() as u8, 0x03, 0xe9]);
    assert_eq!(core.e.conn(key).unwrap().phase, Phase::Closing);
    feed(&mut core, http, &http_sock, b"GET /ready HTTP/1.1\r\n\r\n");
    assert!(http_sock.take_text().starts_with("HTTP/1.1 503 "));
    let (late, late_sock) = core.accept_fake();
    feed(&mut core, late, &late_sock, UPGRADE.as_bytes());
    assert!(late_sock.take_text().starts_with("HTTP/1.1 503 "));
    // The peer answers our close: the socket closes at once, without lingering.
    assert_eq!(feed(&mut core, key, &sock, &masked(8, &[0x03, 0xe9])), State::Gone);
}

#[test]
fn drain_gives_up_on_silent_peers_at_the_drain_timeout() {
    let mut core = core_with(Settings { drain_timeout: 3, ..settings() });
    let (key, sock) = open_echo(&mut core);
    core.start_drain();
    core.tick(2, 0);
    assert_ne!(core.run_conn(key, &sock), State::Gone);
    core.tick(3, 0);
    assert_eq!(core.run_conn(key, &sock), State::Gone);
}

#[test]
fn echo_stops_reading_when_its_peer_does_not_read() {
    let mut core = core_with(Settings { max_outbound_bytes: 1000, ..settings() });
    let (key, sock) = open_echo(&mut core);
    sock.set_room(Some(0));
    let frames: Vec<u8> = (0..3).flat_map(|_| masked(2, &[0; 400])).collect();
    let state = feed(&mut core, key, &sock, &frames);
    assert_eq!(state, State::Blocked);
    assert!(core.e.conn(key).unwrap().has(flag::READ_PAUSED));
    feed(&mut core, key, &sock, &masked(2, &[0; 400]));
    assert!(!sock.0.borrow().input.is_empty(), "input is left unread while paused");
    // The peer reads again: the queue drains and reading resumes.
    sock.set_room(None);
    core.run_conn(key, &sock);
    assert!(!core.e.conn(key).unwrap().has(flag::READ_PAUSED));
    assert!(sock.0.borrow().input.is_empty());
    assert_eq!(sock.take().len(), 4 * (400 + 4));
}

#[test]
fn removal_frees_the_slot_and_the_count() {
    let mut core = core();
    let (key, _sock) = open_echo(&mut core);
    assert_eq!(core.e.ws_count(), 1);
    core.remove(key);
    assert_eq!(core.e.ws_count(), 0);
    assert!(core.e.conn(key).is_none());
    // A new connection in the same slot is a different key.
    let (again, _) = core.accept_fake();
    assert_eq!(again.idx, key.idx);
    assert_ne!(again, key);
    assert!(core.e.conn(key).is_none());
}

#[test]
fn idle_websocket_has_no_heap_state() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    feed(&mut core, key, &sock, &masked(1, b"x"));
    assert_eq!(core.e.conn(key).unwrap().heap_bytes(), 0);
}

#[test]
fn regression_no_frame_follows_our_close_frame() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    core.with_service(|_, e| e.close_ws(key, 1001, "bye"));
    assert_eq!(sock.take()[0], 0x88);
    let pushed = core.with_service(|_, e| {
        e.send(key, text_frame(b"late"));
        e.push(key.idx, &text_frame(b"later"), None)
    });
    assert!(!pushed);
    core.run_conn(key, &sock);
    assert!(sock.take().is_empty(), "a data frame after the close frame");
}

#[test]
fn regression_cutting_a_slow_consumer_keeps_a_partly_written_frame() {
    // The echo endpoint pauses; a service connection whose policy disconnects is cut.
    let mut core = core_with(Settings { max_outbound_bytes: 100, ..settings() });
    core.e.policy.slow_consumer = Some(Goodbye { notice: None, code: 4100, reason: "slow" });
    let (key, sock) = open_echo(&mut core);
    core.e.conns[key.idx as usize].kind = super::conn::Kind::Service;
    // The socket takes 5 bytes of the first frame, then nothing.
    sock.set_room(Some(5));
    core.with_service(|_, e| e.push(key.idx, &text_frame(&[b'a'; 60]), None));
    core.run_conn(key, &sock);
    core.with_service(|_, e| e.push(key.idx, &text_frame(&[b'b'; 60]), None));
    assert_eq!(core.e.stats.slow_consumers, 1);
    // Over budget: the unstarted frame is dropped; the started one is completed first, then the
    // close frame.
    sock.set_room(None);
    core.run_conn(key, &sock);
    let out = sock.take();
    assert_eq!(out.len(), 62 + 2 + 2 + 4, "{out:?}");
    assert!(out[..62].iter().skip(2).all(|&b| b == b'a'));
    assert_eq!(&out[62..64], &[0x88, 6]);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, b"POST /ready HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(sock.take_text(), "HTTP/1.1 100 Continue\r\n\r\n");
    feed(&mut core, key, &sock, b"{}   ");
    let out = sock.take_text();
    assert!(out.starts_with("HTTP/1.1 405 "), "the request is then handled: {out}");
    assert!(!out.contains("100 Continue"));
}

#[test]
fn with_echo_an_upgrade_on_root_is_the_echo_endpoint_and_plain_get_stays_200() {
    let mut core = core();
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, UPGRADE.replace("GET /echo", "GET /").as_bytes());
    assert!(sock.take_text().starts_with("HTTP/1.1 101 "));
    let (key, sock) = core.accept_fake();
    feed(&mut core, key, &sock, b"GET / HTTP/1.1\r\n\r\n");
    assert!(sock.take_text().starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn fan_out_in_one_turn_is_one_send_per_connection_in_order() {
    let mut core = core();
    let conns: Vec<(ConnKey, FakeSocket)> = (0..3).map(|_| open_echo(&mut core)).collect();
    let before: Vec<u64> = conns.iter().map(|(_, s)| s.0.borrow().sends).collect();
    for i in 0..5u8 {
        for (key, _) in &conns {
            assert!(core.e.push(key.idx, &text_frame(&[b'0' + i]), None));
        }
    }
    // Nothing is written until the flusher runs.
    assert!(conns.iter().all(|(_, s)| s.0.borrow().output.is_empty()));
    core.flush_all();
    for ((_, sock), before) in conns.iter().zip(before) {
        assert_eq!(sock.0.borrow().sends - before, 1, "one send per connection");
        let out = sock.take();
        let payloads: Vec<u8> = out.chunks(3).map(|f| f[2]).collect();
        assert_eq!(payloads, b"01234", "in order");
    }
    assert_eq!(core.e.stats.frames_out, 3 + 15, "the 101s and the frames");
}

#[test]
fn a_direct_reply_goes_after_frames_already_due_and_in_the_same_send() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    core.e.push(key.idx, &text_frame(b"a"), None);
    core.e.push(key.idx, &text_frame(b"b"), None);
    let sends = sock.0.borrow().sends;
    // The peer pings: the pong is a direct reply, written before the entry point returns.
    feed(&mut core, key, &sock, &masked(9, b"p"));
    assert_eq!(sock.0.borrow().sends - sends, 1);
    assert_eq!(sock.take(), [&[0x81, 1, b'a'][..], &[0x81, 1, b'b'], &[0x8a, 1, b'p']].concat());
}

#[test]
fn a_partly_written_batch_is_completed_before_anything_else() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    sock.set_room(Some(4));
    core.e.push(key.idx, &text_frame(b"abc"), None);
    core.e.push(key.idx, &text_frame(b"def"), None);
    assert_eq!(core.run_conn(key, &sock), State::Blocked);
    assert_eq!(sock.take(), [0x81, 3, b'a', b'b']);
    // Later frames and replies queue behind the rest.
    core.e.push(key.idx, &text_frame(b"ghi"), None);
    core.e.send(key, text_frame(b"jkl"));
    sock.set_room(None);
    core.run_conn(key, &sock);
    let want = [
        &[b'c'][..],
        &[0x81, 3, b'd', b'e', b'f'],
        &[0x81, 3, b'g', b'h', b'i'],
        &[0x81, 3, b'j', b'k', b'l'],
    ]
    .concat();
    assert_eq!(sock.take(), want);
    assert_eq!(core.e.queued_bytes(), 0);
}

#[test]
fn idle_connections_keep_no_write_state_after_a_flush() {
    let mut core = core();
    let (key, sock) = open_echo(&mut core);
    core.e.push(key.idx, &text_frame(b"x"), None);
    core.run_conn(key, &sock);
    let conn = core.e.conn(key).unwrap();
    assert!(conn.out.is_none() && !conn.has(flag::DIRTY) && !conn.has(flag::BLOCKED));
    assert_eq!(core.e.dirty_count(), 0);
}

/// Two open echo connections on a core that holds due frames for 50 ms under a backlog.
fn coalescing_core() -> (Core<Nothing>, [(ConnKey, FakeSocket); 2]) {
    let mut core = core_with(Settings { coalesce_ms: 50, ..settings() });
    let a = open_echo(&mut core);
    let b = open_echo(&mut core);
    a.1.take();
    b.1.take();
    (core, [a, b])
}

/// Makes the core's backlog 60 ms old: at 1000 ms `first` and `second` become due, `first` is
/// written (a new backlog holds nothing) and `second` is left waiting; the clock is then 1060.
fn sustain_a_backlog(core: &mut Core<Nothing>, first: ConnKey, second: ConnKey) {
    core.set_clock_ms(1000);
    core.e.push(first.idx, &text_frame(b"1"), None);
    core.e.push(second.idx, &text_frame(b"1"), None);
    assert_eq!(core.flush(1), Flushed::More);
    core.set_clock_ms(1060);
}

#[test]
fn under_a_sustained_backlog_a_connection_waits_coalesce_ms_and_sends_its_frames_at_once() {
    let (mut core, [(a, sa), (b, sb)]) = coalescing_core();
    sustain_a_backlog(&mut core, a, b);
    // The backlog was new: A went out at once.
    assert_eq!(sa.take(), [0x81, 1, b'1']);
    // B still waits and A is due again: the backlog is sustained, so B (due for 60 ms) is
    // written, and A is held until 50 ms after it became due.
    core.e.push(a.idx, &text_frame(b"2"), None);
    assert_eq!(core.flush(usize::MAX), Flushed::HoldUntil(1110));
    assert_eq!(sb.take(), [0x81, 1, b'1']);
    assert!(sa.take().is_empty());
    let sends = sa.0.borrow().sends;
    for (ms, frame) in [(1080, b"3"), (1109, b"4")] {
        core.set_clock_ms(ms);
        core.e.push(a.idx, &text_frame(frame), None);
        assert_eq!(core.flush(usize::MAX), Flushed::HoldUntil(1110));
        assert!(sa.take().is_empty(), "held at {ms} ms");
    }
    core.set_clock_ms(1110);
    assert_eq!(core.flush(usize::MAX), Flushed::Done);
    assert_eq!(sa.take(), [[0x81, 1, b'2'], [0x81, 1, b'3'], [0x81, 1, b'4']].concat());
    assert_eq!(sa.0.borrow().sends - sends, 1, "what was held leaves in one send");
}

#[test]
fn without_a_sustained_backlog_frames_are_not_held() {
    let (mut core, [(a, sa), (b, sb)]) = coalescing_core();
    // A backlog that lasted 60 ms and ended: the next frame goes out at once.
    sustain_a_backlog(&mut core, a, b);
    assert_eq!(core.flush(usize::MAX), Flushed::Done);
    assert_eq!((sa.take().len(), sb.take().len()), (3, 3));
    core.set_clock_ms(1061);
    core.e.push(a.idx, &text_frame(b"2"), None);
    assert_eq!(core.flush(usize::MAX), Flushed::Done);
    assert_eq!(sa.take(), [0x81, 1, b'2']);
    // Frames published every millisecond, each written before the next: the list empties every
    // time, so nothing is held however long it goes on.
    for ms in 2000..2100 {
        core.set_clock_ms(ms);
        core.e.push(b.idx, &text_frame(b"x"), None);
        assert_eq!(core.flush(usize::MAX), Flushed::Done, "at {ms} ms");
    }
    assert_eq!(sb.take().len(), 300);
}

#[test]
fn a_direct_reply_takes_held_frames_along_in_order() {
    let (mut core, [(a, sa), (b, _)]) = coalescing_core();
    sustain_a_backlog(&mut core, b, a);
    core.e.push(b.idx, &text_frame(b"0"), None);
    assert_eq!(core.flush(usize::MAX), Flushed::HoldUntil(1110));
    assert_eq!(sa.take(), [0x81, 1, b'1']);
    core.e.push(a.idx, &text_frame(b"2"), None);
    assert_eq!(core.flush(usize::MAX), Flushed::HoldUntil(1110));
    // A pings: the pong goes out now, after the held frame, in one send.
    feed(&mut core, a, &sa, &masked(9, b"p"));
    assert_eq!(sa.take(), [&[0x81, 1, b'2'][..], &[0x8a, 1, b'p']].concat());
    core.set_clock_ms(1110);
    assert_eq!(core.flush(usize::MAX), Flushed::Done);
    assert!(sa.take().is_empty());
}
