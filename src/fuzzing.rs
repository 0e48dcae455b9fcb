//! The whole sans-I/O server under a fuzzer: two cores of the Pusher service driven through
//! fake sockets by a script decoded from the input — raw bytes on connections (HTTP heads and
//! bodies, upgrades, WebSocket frames), well-formed Pusher messages with valid or broken
//! signatures (subscribe, presence with odd `channel_data`, sign-in with watchlists, client
//! events), signed HTTP API requests, closes, clock ticks and sockets that stop reading. After
//! every step it checks that per-connection state is bounded and that the connection, channel,
//! presence and quota tables agree; at the end, with every connection gone, that nothing is
//! left.
//!
//! `fuzz/fuzz_targets/server.rs` runs it under libFuzzer; `tests/fuzz_corpus.rs` replays the
//! seed corpus on every test run.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;

use crate::config::Config;
use crate::core::Core;
use crate::core::conn::ConnKey;
use crate::core::io::{CoreId, Outlet};
use crate::core::testing::FakeSocket;
use crate::protocol::frame;
use crate::pusher::apps::{App, AppIdx};
use crate::pusher::auth;
use crate::pusher::query::CoreReport;
use crate::pusher::socket_id::NodeId;
use crate::pusher::wire::Hook;
use crate::pusher::{self, Pusher};

/// Core seconds the harness starts at (so that deadlines in the past are exercised too).
const UNIX_START: i64 = 1_700_000_000;
/// Most steps taken from one input.
const MAX_STEPS: usize = 400;

/// Runs the whole server over `data`; panics when an invariant breaks.
pub fn server(data: &[u8]) {
    let mut h = Harness::new();
    let mut input = Input(data);
    for _ in 0..MAX_STEPS {
        let Some(op) = input.byte() else { break };
        h.step(op, &mut input);
        h.pump();
        h.check();
    }
    h.finish();
}

/// Reads the script.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn pick(&mut self, n: usize) -> usize {
        self.byte().map_or(0, |b| usize::from(b) % n.max(1))
    }

    /// A length-prefixed chunk (up to 255 bytes).
    fn chunk(&mut self) -> Vec<u8> {
        let len = self.byte().map_or(0, usize::from).min(self.0.len());
        let (chunk, rest) = self.0.split_at(len);
        self.0 = rest;
        chunk.to_vec()
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.chunk()).into_owned()
    }
}

/// Counts webhook events instead of sending them.
#[derive(Clone, Default)]
struct Hooks(Rc<RefCell<u64>>);

impl Outlet<Hook> for Hooks {
    fn push(&mut self, _: Hook) -> Result<(), Hook> {
        *self.0.borrow_mut() += 1;
        Ok(())
    }
}

struct Client {
    shard: usize,
    key: ConnKey,
    sock: FakeSocket,
    socket_id: Option<String>,
}

struct Harness {
    cores: Vec<Core<Pusher>>,
    clients: Vec<Client>,
    now: u32,
    cfg: Config,
}

const CHANNELS: [&str; 8] = [
    "news",
    "private-a",
    "presence-room",
    "presence-big",
    "private-encrypted-x",
    "cache-prices",
    "#server-to-user-u1",
    "presence-cache-p",
];
const USERS: [&str; 4] = ["u1", "u2", "7", "a\"b"];
const UPGRADE: &str = "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn no_metrics(_: &[CoreReport], _: &[App], _: pusher::Rendering) -> String {
    String::new()
}

impl Harness {
    fn new() -> Harness {
        let mut cfg = Config { cores: 2, echo: true, max_outbound_bytes: 8 * 1024, ..Config::default() };
        cfg.max_connections = 12;
        let mut app = App::development();
        app.webhooks = vec![crate::pusher::hook_targets::Webhook::url("http://127.0.0.1:9/hooks")];
        app.subscription_count_webhooks = true;
        app.max_presence_members = 3;
        app.max_channels_per_connection = 4;
        app.client_event_rate = 3;
        app.max_connections = 10;
        app.max_presence_member_bytes = 64;
        app.subscription_count_events = true;
        app.authorized_connections_timeout = 7;
        app.max_watchlist_size = 3;
        cfg.apps.push(app);
        let cores = (0..2u16)
            .map(|s| {
                let mut pusher = Pusher::new(pusher::Config {
                    apps: cfg.apps.clone(),
                    node: NodeId(7),
                    render: no_metrics,
                    status_token: String::new(),
                    faults: false,
                });
                pusher.set_webhooks(Box::new(Hooks::default()));
                let mut core = Core::new(CoreId(s), cfg.engine_settings(), pusher, 0);
                core.tick(0, UNIX_START);
                core
            })
            .collect();
        Harness { cores, clients: Vec::new(), now: 0, cfg }
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) {
        match op % 12 {
            0 => {
                let shard = input.pick(2);
                let request = match input.pick(4) {
                    0 => UPGRADE.to_string(),
                    1 => UPGRADE.replace("app-key", "nope"),
                    2 => UPGRADE.replace("/app/app-key?protocol=7", "/echo"),
                    _ => input.text(),
                };
                self.open(shard, request.as_bytes());
            }
            1 => {
                let bytes = input.chunk();
                self.feed(input, &bytes);
            }
            2 => {
                let event =
                    ["pusher:subscribe", "pusher:unsubscribe", "pusher:ping", "pusher:signin", "client-x"]
                        [input.pick(5)];
                let channel = CHANNELS[input.pick(CHANNELS.len())];
                let data = input.text();
                let msg = json!({"event": event, "channel": channel, "data": data});
                self.send_frame(input, msg.to_string().as_bytes());
            }
            3 => self.subscribe(input),
            4 => self.signin(input),
            5 => {
                let channel = CHANNELS[input.pick(CHANNELS.len())];
                let data = input.text();
                let msg = json!({"event": "client-typing", "channel": channel, "data": {"t": data}});
                self.send_frame(input, msg.to_string().as_bytes());
            }
            6 => self.api(input),
            7 => {
                if let Some(c) = self.client(input) {
                    c.sock.close_input();
                    let (shard, key, sock) = (c.shard, c.key, c.sock.clone());
                    self.cores[shard].run_conn(key, &sock);
                }
            }
            8 => {
                let seconds = 1 + input.pick(40) as u32;
                self.now += seconds;
                for core in &mut self.cores {
                    core.tick(self.now, UNIX_START + i64::from(self.now));
                }
            }
            9 => {
                if let Some(c) = self.client(input) {
                    let room = [Some(0), Some(7), Some(100), None][input.pick(4)];
                    c.sock.set_room(room);
                    let (shard, key, sock) = (c.shard, c.key, c.sock.clone());
                    self.cores[shard].run_conn(key, &sock);
                }
            }
            10 => {
                // A frame split at an arbitrary point, or fragmented across frames.
                let payload = input.chunk();
                let mask = [1, 2, 3, 4];
                let mut bytes = frame::encode_client(false, 1, &payload[..payload.len() / 2], mask);
                bytes.extend(frame::encode_client(true, 0, &payload[payload.len() / 2..], mask));
                self.feed(input, &bytes);
            }
            _ => {
                let shard = input.pick(2);
                let frame = crate::pusher::messages::event("e", Some("news"), &input.text());
                self.cores[shard].with_service(|s, e| s.publish(e, AppIdx(0), "news", frame, None, None));
            }
        }
    }

    fn client(&mut self, input: &mut Input<'_>) -> Option<&mut Client> {
        let i = self.pick_client(input)?;
        self.clients.get_mut(i)
    }

    fn pick_client(&self, input: &mut Input<'_>) -> Option<usize> {
        (!self.clients.is_empty()).then(|| input.pick(self.clients.len()))
    }

    fn open(&mut self, shard: usize, request: &[u8]) {
        if self.clients.len() >= 32 {
            return;
        }
        let (key, sock) = self.cores[shard].accept_fake();
        sock.push_input(request);
        self.cores[shard].run_conn(key, &sock);
        self.pump();
        let out = sock.take();
        let socket_id = established_socket_id(&out);
        self.clients.push(Client { shard, key, sock, socket_id });
    }

    fn feed(&mut self, input: &mut Input<'_>, bytes: &[u8]) {
        if let Some(i) = self.pick_client(input) {
            self.feed_to(i, bytes);
        }
    }

    fn feed_to(&mut self, i: usize, bytes: &[u8]) {
        let c = &self.clients[i];
        c.sock.push_input(bytes);
        let (shard, key, sock) = (c.shard, c.key, c.sock.clone());
        self.cores[shard].run_conn(key, &sock);
        let out = sock.take();
        if std::env::var_os("FUZZ_DEBUG").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&out));
        }
    }

    fn send_frame(&mut self, input: &mut Input<'_>, payload: &[u8]) {
        if let Some(i) = self.pick_client(input) {
            self.send_frame_to(i, payload);
        }
    }

    fn send_frame_to(&mut self, i: usize, payload: &[u8]) {
        self.feed_to(i, &frame::encode_client(true, 1, payload, [9, 8, 7, 6]));
    }

    fn subscribe(&mut self, input: &mut Input<'_>) {
        let channel = CHANNELS[input.pick(CHANNELS.len())];
        let user = USERS[input.pick(USERS.len())];
        let odd = input.pick(4);
        let channel_data = match odd {
            0 => json!({"user_id": user, "user_info": {"n": user}}).to_string(),
            1 => json!({"user_id": 7}).to_string(),
            2 => input.text(),
            _ => json!({"user_id": user, "user_info": "x".repeat(100)}).to_string(),
        };
        let Some(i) = self.pick_client(input) else { return };
        let Some(id) = self.clients[i].socket_id.clone() else { return };
        let sig = if channel.starts_with("presence-") {
            auth::sign("app-secret", &[format!("{id}:{channel}:{channel_data}").as_bytes()])
        } else {
            auth::sign("app-secret", &[format!("{id}:{channel}").as_bytes()])
        };
        let data =
            json!({"channel": channel, "auth": format!("app-key:{sig}"), "channel_data": channel_data});
        let msg = json!({"event": "pusher:subscribe", "data": data}).to_string();
        self.send_frame_to(i, msg.as_bytes());
    }

    fn signin(&mut self, input: &mut Input<'_>) {
        let user = USERS[input.pick(USERS.len())];
        let Some(i) = self.pick_client(input) else { return };
        let Some(id) = self.clients[i].socket_id.clone() else { return };
        // Watchlists of other users, of oneself, too long (refused), or not a list (refused).
        let watchlist = match input.pick(5) {
            0 => json!(["u2"]),
            1 => json!([USERS[input.pick(USERS.len())], "u1", "u1"]),
            2 => json!(["u1", "u2", "7", "x"]),
            3 => json!("u2"),
            _ => json!(null),
        };
        let user_data = json!({"id": user, "watchlist": watchlist}).to_string();
        let sig = auth::sign("app-secret", &[format!("{id}::user::{user_data}").as_bytes()]);
        let data = json!({"auth": format!("app-key:{sig}"), "user_data": user_data});
        let msg = json!({"event": "pusher:signin", "data": data}).to_string();
        self.send_frame_to(i, msg.as_bytes());
    }

    fn api(&mut self, input: &mut Input<'_>) {
        let shard = input.pick(2);
        let channel = CHANNELS[input.pick(CHANNELS.len())];
        let (method, path, body) = match input.pick(6) {
            0 => (
                "POST",
                "/apps/1/events".to_string(),
                json!({"name": "e", "channel": channel, "data": input.text()}),
            ),
            1 => (
                "POST",
                "/apps/1/batch_events".into(),
                json!({"batch": [{"name": "e", "channel": channel, "data": "d"}, {"name": "", "channel": channel, "data": "d"}]}),
            ),
            2 => ("GET", "/apps/1/channels".into(), json!(null)),
            3 => ("GET", format!("/apps/1/channels/{channel}"), json!(null)),
            4 => ("GET", format!("/apps/1/channels/{channel}/users"), json!(null)),
            _ => (
                "POST",
                format!("/apps/1/users/{}/terminate_connections", USERS[input.pick(USERS.len())]),
                json!({}),
            ),
        };
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let ts = UNIX_START + i64::from(self.now) + [0, 0, -601, 601][input.pick(4)];
        let mut params =
            vec!["auth_key=app-key".to_string(), format!("auth_timestamp={ts}"), "auth_version=1.0".into()];
        if !body.is_empty() {
            params.push(format!("body_md5={:x}", md5::compute(&body)));
        }
        params.sort();
        let query = params.join("&");
        let sig = auth::sign("app-secret", &[format!("{method}\n{path}\n{query}").as_bytes()]);
        let request = format!(
            "{method} {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // Sometimes the client goes away while its request waits for the other core.
        let abandon = input.pick(3) == 0;
        let (key, sock) = self.cores[shard].accept_fake();
        sock.push_input(request.as_bytes());
        self.cores[shard].run_conn(key, &sock);
        if abandon {
            sock.close_input();
            self.cores[shard].run_conn(key, &sock);
        }
        self.clients.push(Client { shard, key, sock, socket_id: None });
    }

    /// Delivers every cross-core message and writes every queued frame, until nothing moves.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for from in 0..self.cores.len() {
                for to in 0..self.cores.len() {
                    let peer = CoreId(u16::try_from(to).expect("two cores"));
                    while let Some(msg) = self.cores[from].e.next_for_peer(peer) {
                        self.cores[to].on_peer(CoreId(u16::try_from(from).expect("two cores")), msg);
                        moved = true;
                    }
                }
            }
            for core in &mut self.cores {
                core.flush_all();
            }
            if !moved {
                return;
            }
        }
        panic!("cross-core messages keep flowing");
    }

    fn check(&mut self) {
        for core in &self.cores {
            core.e.check_invariants();
            core.s.check_invariants(&core.e);
        }
        pusher::check_presence_owners(&self.cores);
        pusher::check_watch_owners(&self.cores);
        // Connections the core removed are forgotten by the harness too.
        self.clients.retain(|c| self.cores[c.shard].e.conn(c.key).is_some());
        for c in &self.clients {
            let out = c.sock.take();
            if std::env::var_os("FUZZ_DEBUG").is_some() && !out.is_empty() {
                eprintln!("[{:?}] {}", c.key, String::from_utf8_lossy(&out));
            }
        }
    }

    /// Every connection goes; nothing may be left behind.
    fn finish(mut self) {
        for c in std::mem::take(&mut self.clients) {
            c.sock.close_input();
            c.sock.set_room(None);
            self.cores[c.shard].run_conn(c.key, &c.sock);
        }
        self.pump();
        let later =
            self.now + self.cfg.close_timeout + self.cfg.handshake_timeout + pusher::QUESTION_TIMEOUT + 2;
        for core in &mut self.cores {
            core.tick(later, UNIX_START + i64::from(later));
        }
        self.pump();
        for core in &self.cores {
            assert_eq!(core.e.conn_count(), 0, "connections left");
            assert_eq!(core.e.queued_bytes(), 0, "queued bytes left");
            core.s.check_empty();
        }
    }
}

/// The socket id from `pusher:connection_established`, if the output has one.
fn established_socket_id(out: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(out);
    let at = text.find("\\\"socket_id\\\":\\\"")? + "\\\"socket_id\\\":\\\"".len();
    let end = text[at..].find("\\\"")?;
    Some(text[at..at + end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic smoke run over pseudo-random scripts (the fuzzers go much further).
    #[test]
    fn random_scripts_keep_the_invariants() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let len = (next() % 600) as usize;
            let data: Vec<u8> = (0..len).map(|_| (next() >> 24) as u8).collect();
            server(&data);
        }
    }

    #[test]
    fn a_presence_script_really_joins_and_publishes() {
        let mut h = Harness::new();
        h.open(0, UPGRADE.as_bytes());
        h.open(1, UPGRADE.as_bytes());
        assert!(h.clients.iter().all(|c| c.socket_id.is_some()), "both established");
        for (i, c) in [0u8, 1].iter().enumerate() {
            let script = [2u8, *c, 0, *c];
            let mut input = Input(&script);
            h.subscribe(&mut input);
            h.pump();
            h.check();
            let members: usize = h.cores.iter().map(|c| c.s.presence.member_count()).sum();
            assert_eq!(members, i + 1, "member {} joined", i + 1);
        }
        h.finish();
    }

    #[test]
    fn a_watchlist_script_really_watches() {
        let mut h = Harness::new();
        h.open(0, UPGRADE.as_bytes());
        h.open(1, UPGRADE.as_bytes());
        // Client 0 signs in as u1 watching u2; client 1 as u2 without a watchlist.
        for script in [[0u8, 0, 0], [1, 4, 1]] {
            let mut input = Input(&script);
            h.signin(&mut input);
            h.pump();
            h.check();
        }
        let entries: usize = h.cores.iter().map(|c| c.s.watched.iter().map(|m| m.len()).sum::<usize>()).sum();
        let watchers: usize = h
            .cores
            .iter()
            .flat_map(|c| c.s.watched.iter().flat_map(|m| m.values()))
            .map(|w| w.watchers.len())
            .sum();
        assert_eq!((entries, watchers), (2, 1), "u1 and u2 online, u2 watched by u1");
        h.finish();
    }
}
