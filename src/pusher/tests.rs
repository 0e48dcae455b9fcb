//! The Pusher layer driven without sockets: several cores whose mesh is a loop in the test, and
//! fake sockets that record what each connection would have received.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Value, json};

use crate::core::Core;
use crate::core::conn::ConnKey;
use crate::core::engine::Settings;
use crate::core::io::{CoreId, Outlet};
use crate::core::testing::FakeSocket;
use crate::pusher::apps::{App, AppIdx};
use crate::pusher::auth;
use crate::pusher::hook_targets::Webhook;
use crate::pusher::socket_id::{NodeId, SocketRef};
use crate::pusher::wire::Hook;
use crate::pusher::{Pusher, query::CoreReport};

const APP: AppIdx = AppIdx(0);

struct Cluster {
    cores: Vec<Core<Pusher>>,
}

/// What a test may change before the cores start.
struct Setup {
    settings: Settings,
    apps: Vec<App>,
}

struct Client {
    shard: usize,
    key: ConnKey,
    sock: FakeSocket,
    socket_id: String,
}

const UPGRADE: &str = "GET /app/app-key?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn masked(payload: &[u8]) -> Vec<u8> {
    crate::protocol::decoder::tests_support::client_frame(true, 1, payload, [1, 2, 3, 4])
}

fn no_metrics(_: &[CoreReport], _: &[App], _: crate::pusher::Rendering) -> String {
    String::new()
}

/// Webhook events a core queued, kept in the test.
#[derive(Clone, Default)]
struct HookLog(Rc<RefCell<Vec<Hook>>>);

impl Outlet<Hook> for HookLog {
    fn push(&mut self, hook: Hook) -> Result<(), Hook> {
        self.0.borrow_mut().push(hook);
        Ok(())
    }
}

impl Cluster {
    fn new(shards: u16, tweak: impl Fn(&mut Setup)) -> Cluster {
        let mut cfg = Setup {
            settings: Settings { cores: shards, ..Settings::default() },
            apps: vec![App::development()],
        };
        tweak(&mut cfg);
        let cores = (0..shards)
            .map(|s| {
                let pusher = Pusher::new(crate::pusher::Config {
                    apps: cfg.apps.clone(),
                    node: NodeId(7),
                    render: no_metrics,
                    status_token: String::new(),
                    faults: false,
                });
                let mut core = Core::new(CoreId(s), cfg.settings.clone(), pusher, 0);
                core.tick(0, 1_700_000_000);
                core
            })
            .collect();
        Cluster { cores }
    }

    /// Delivers every queued cross-core message and writes every queued frame, until nothing
    /// moves.
    fn pump(&mut self) {
        loop {
            let moved = self.pump_messages();
            for core in &mut self.cores {
                core.flush_all();
            }
            if !moved {
                return;
            }
        }
    }

    /// Delivers every queued cross-core message, writing nothing the flusher would write; true
    /// if any moved.
    fn pump_messages(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            for from in 0..self.cores.len() {
                for to in 0..self.cores.len() {
                    let peer = CoreId(to as u16);
                    while let Some(msg) = self.cores[from].e.next_for_peer(peer) {
                        self.cores[to].on_peer(CoreId(from as u16), msg);
                        moved = true;
                    }
                }
            }
            if !moved {
                return any;
            }
            any = true;
        }
    }

    fn feed(&mut self, c: &Client, bytes: &[u8]) {
        c.sock.push_input(bytes);
        self.cores[c.shard].run_conn(c.key, &c.sock);
        self.pump();
    }

    fn send_json(&mut self, c: &Client, v: Value) {
        self.feed(c, &masked(v.to_string().as_bytes()));
    }

    fn connect(&mut self, shard: usize) -> Client {
        self.connect_with(shard, UPGRADE)
    }

    fn connect_with(&mut self, shard: usize, request: &str) -> Client {
        let (key, sock) = self.cores[shard].accept_fake();
        let mut c = Client { shard, key, sock, socket_id: String::new() };
        self.feed(&c, request.as_bytes());
        let out = self.take(&c);
        if let Some(est) = out.iter().find(|m| m["event"] == "pusher:connection_established") {
            let data: Value = serde_json::from_str(est["data"].as_str().unwrap()).unwrap();
            c.socket_id = data["socket_id"].as_str().unwrap().to_string();
        } else {
            c.sock.0.borrow_mut().output = raw_frames(&out);
        }
        c
    }

    /// Text messages the client received since the last call, parsed.
    fn take(&mut self, c: &Client) -> Vec<Value> {
        parse_frames(&c.sock.take())
    }

    /// A plain HTTP request on a new connection; the raw response.
    fn http(&mut self, shard: usize, request: &str) -> String {
        let (key, sock) = self.cores[shard].accept_fake();
        sock.push_input(request.as_bytes());
        self.cores[shard].run_conn(key, &sock);
        self.pump();
        sock.take_text()
    }

    fn remove(&mut self, c: &Client) {
        self.cores[c.shard].remove(c.key);
        self.pump();
    }

    fn publish(
        &mut self,
        shard: usize,
        channel: &str,
        frame: bytes::Bytes,
        except: Option<SocketRef>,
        cache: Option<Box<str>>,
    ) {
        self.cores[shard].with_service(|s, e| s.publish(e, APP, channel, frame, except, cache));
        self.pump();
    }

    fn tick(&mut self, shard: usize, now: u32) {
        self.cores[shard].tick(now, 1_700_000_000 + i64::from(now));
        self.pump();
    }

    /// Signs `c` in with `user_data`, signed as the official SDKs sign it.
    fn signin(&mut self, c: &Client, user_data: &str) {
        let sig = auth::sign("app-secret", &[format!("{}::user::{user_data}", c.socket_id).as_bytes()]);
        let data = json!({"auth": format!("app-key:{sig}"), "user_data": user_data});
        self.send_json(c, json!({"event": "pusher:signin", "data": data}));
    }

    fn subscribe(&mut self, c: &Client, channel: &str, channel_data: Option<&str>) {
        let auth = if channel.starts_with("private-") || channel.starts_with("presence-") {
            let sig = match channel_data {
                Some(d) => auth::sign("app-secret", &[format!("{}:{channel}:{d}", c.socket_id).as_bytes()]),
                None => auth::sign("app-secret", &[format!("{}:{channel}", c.socket_id).as_bytes()]),
            };
            format!("app-key:{sig}")
        } else {
            String::new()
        };
        let mut data = json!({"channel": channel, "auth": auth});
        if let Some(d) = channel_data {
            data["channel_data"] = json!(d);
        }
        self.send_json(c, json!({"event": "pusher:subscribe", "data": data}));
    }
}

fn raw_frames(msgs: &[Value]) -> Vec<u8> {
    msgs.iter()
        .flat_map(|m| {
            crate::protocol::frame::encode(crate::protocol::frame::Opcode::Text, m.to_string().as_bytes())
                .to_vec()
        })
        .collect()
}

/// Parses server frames; a close frame becomes `{"close": code}`.
fn parse_frames(mut b: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    // Skip an HTTP response head.
    if b.starts_with(b"HTTP/") {
        let end = b.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        b = &b[end..];
    }
    while b.len() >= 2 {
        let mut len = (b[1] & 0x7f) as usize;
        let mut off = 2;
        if len == 126 {
            len = u16::from_be_bytes([b[2], b[3]]) as usize;
            off = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize;
            off = 10;
        }
        let payload = &b[off..off + len];
        match b[0] & 0x0f {
            1 => out.push(serde_json::from_slice(payload).unwrap()),
            8 => out.push(json!({"close": u16::from_be_bytes([payload[0], payload[1]])})),
            _ => {}
        }
        b = &b[off + len..];
    }
    out
}

fn events(msgs: &[Value]) -> Vec<String> {
    msgs.iter().map(|m| m["event"].as_str().map_or_else(|| m.to_string(), String::from)).collect()
}

fn data_of(m: &Value) -> Value {
    serde_json::from_str(m["data"].as_str().unwrap()).unwrap()
}

#[test]
fn connection_established_carries_a_routable_socket_id() {
    let mut cl = Cluster::new(2, |_| {});
    let c = cl.connect(1);
    let r = SocketRef::parse(&c.socket_id).unwrap();
    assert_eq!((r.node, r.shard, r.key), (NodeId(7), CoreId(1), c.key));
}

#[test]
fn unknown_key_and_bad_protocol_get_pusher_errors_and_closes() {
    let mut cl = Cluster::new(1, |_| {});
    let c = cl.connect_with(0, &UPGRADE.replace("/app/app-key", "/app/nope"));
    let out = cl.take(&c);
    assert_eq!(out[0]["event"], "pusher:error");
    assert_eq!(out[0]["data"]["code"], 4001);
    assert_eq!(out[1]["close"], 4001);
    let c = cl.connect_with(0, &UPGRADE.replace("protocol=7", "protocol=3"));
    let out = cl.take(&c);
    assert_eq!(out[0]["data"]["code"], 4007);
    assert_eq!(out[1]["close"], 4007);
}

#[test]
fn publish_reaches_subscribers_on_every_core_in_order_except_the_sender() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(0);
    let b = cl.connect(1);
    cl.subscribe(&a, "news", None);
    cl.subscribe(&b, "news", None);
    assert_eq!(events(&cl.take(&a)), ["pusher_internal:subscription_succeeded"]);
    assert_eq!(cl.take(&b)[0]["data"], "{}");
    for i in 0..5 {
        let frame = crate::pusher::messages::event("tick", Some("news"), &i.to_string());
        let except = (i == 4).then(|| SocketRef::parse(&b.socket_id).unwrap());
        cl.publish(0, "news", frame, except, None);
    }
    let got_a: Vec<Value> = cl.take(&a).iter().map(|m| m["data"].clone()).collect();
    let got_b: Vec<Value> = cl.take(&b).iter().map(|m| m["data"].clone()).collect();
    assert_eq!(got_a, ["0", "1", "2", "3", "4"]);
    assert_eq!(got_b, ["0", "1", "2", "3"], "socket_id exclusion works across cores");
}

#[test]
fn private_channels_need_a_valid_signature() {
    let mut cl = Cluster::new(1, |_| {});
    let c = cl.connect(0);
    cl.send_json(&c, json!({"event":"pusher:subscribe","data":{"channel":"private-a","auth":"app-key:00"}}));
    let out = cl.take(&c);
    assert_eq!(out[0]["event"], "pusher:subscription_error");
    assert_eq!(out[0]["data"]["status"], 401);
    assert_eq!(out[0]["data"]["type"], "AuthError");
    cl.subscribe(&c, "private-a", None);
    assert_eq!(events(&cl.take(&c)), ["pusher_internal:subscription_succeeded"]);
}

#[test]
fn presence_counts_connections_per_user_across_cores() {
    let mut cl = Cluster::new(2, |_| {});
    let ann = r#"{"user_id":"ann","user_info":{"name":"Ann"}}"#;
    let bob = r#"{"user_id":"bob"}"#;
    let ann0 = cl.connect(0);
    let ann1 = cl.connect(1);
    let bob0 = cl.connect(1);
    cl.subscribe(&bob0, "presence-room", Some(bob));
    let out = cl.take(&bob0);
    assert_eq!(data_of(&out[0])["presence"]["count"], 1);
    cl.subscribe(&ann0, "presence-room", Some(ann));
    let joined = cl.take(&ann0);
    let p = data_of(&joined[0]);
    assert_eq!(p["presence"]["count"], 2);
    assert_eq!(p["presence"]["hash"]["ann"]["name"], "Ann");
    let added = cl.take(&bob0);
    assert_eq!(events(&added), ["pusher_internal:member_added"]);
    assert_eq!(data_of(&added[0])["user_id"], "ann");
    // Ann's second connection, on the other core: no event for anyone.
    cl.subscribe(&ann1, "presence-room", Some(ann));
    assert_eq!(data_of(&cl.take(&ann1)[0])["presence"]["count"], 2);
    assert!(cl.take(&bob0).is_empty());
    assert!(cl.take(&ann0).is_empty());
    // Ann's first connection leaves: she is still there.
    cl.send_json(&ann0, json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}));
    assert!(cl.take(&bob0).is_empty());
    // Her last connection closes: member_removed, once.
    cl.remove(&ann1);
    let removed = cl.take(&bob0);
    assert_eq!(events(&removed), ["pusher_internal:member_removed"]);
    assert_eq!(data_of(&removed[0]), json!({"user_id": "ann"}));
}

#[test]
fn presence_member_limit_refuses_new_users_only() {
    let mut cl = Cluster::new(2, |cfg| cfg.apps[0].max_presence_members = 1);
    let a1 = cl.connect(0);
    let a2 = cl.connect(1);
    let b = cl.connect(0);
    cl.subscribe(&a1, "presence-x", Some(r#"{"user_id":"a"}"#));
    cl.subscribe(&a2, "presence-x", Some(r#"{"user_id":"a"}"#));
    cl.subscribe(&b, "presence-x", Some(r#"{"user_id":"b"}"#));
    assert_eq!(events(&cl.take(&a2)), ["pusher_internal:subscription_succeeded"]);
    let out = cl.take(&b);
    assert_eq!(out[0]["event"], "pusher:subscription_error");
    assert_eq!(out[0]["data"]["type"], "LimitReached");
    // The refused connection's leave must not count against user a.
    cl.remove(&b);
    assert!(cl.take(&a1).iter().all(|m| m["event"] != "pusher_internal:member_removed"));
}

#[test]
fn client_events_relay_to_others_with_user_id_on_presence() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(0);
    let b = cl.connect(1);
    cl.subscribe(&a, "presence-chat", Some(r#"{"user_id":"7"}"#));
    cl.subscribe(&b, "presence-chat", Some(r#"{"user_id":"8"}"#));
    cl.take(&a);
    cl.take(&b);
    cl.send_json(&a, json!({"event":"client-typing","channel":"presence-chat","data":{"typing":true}}));
    let got = cl.take(&b);
    assert_eq!(got[0]["event"], "client-typing");
    assert_eq!(got[0]["data"], json!({"typing": true}), "data relayed verbatim, not stringified");
    assert_eq!(got[0]["user_id"], "7");
    assert!(cl.take(&a).is_empty(), "not echoed to the sender");
    // Public channels refuse client events.
    cl.subscribe(&a, "public", None);
    cl.take(&a);
    cl.send_json(&a, json!({"event":"client-x","channel":"public","data":{}}));
    let err = cl.take(&a);
    assert_eq!(err[0]["event"], "pusher:error");
}

#[test]
fn client_events_are_rate_limited_per_connection() {
    let mut cl = Cluster::new(1, |_| {});
    let a = cl.connect(0);
    let b = cl.connect(0);
    cl.subscribe(&a, "private-c", None);
    cl.subscribe(&b, "private-c", None);
    cl.take(&a);
    cl.take(&b);
    for i in 0..15 {
        cl.send_json(&a, json!({"event":"client-n","channel":"private-c","data":i}));
    }
    assert_eq!(cl.take(&b).len(), 10);
    let errors = cl.take(&a);
    assert_eq!(errors.len(), 5);
    assert!(errors.iter().all(|e| e["data"]["code"] == 4301));
    cl.tick(0, 1);
    cl.send_json(&a, json!({"event":"client-n","channel":"private-c","data":99}));
    assert_eq!(cl.take(&b).len(), 1, "the next second allows more");
}

#[test]
fn cache_channels_replay_the_last_event_or_report_a_miss() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(0);
    cl.subscribe(&a, "cache-prices", None);
    assert_eq!(events(&cl.take(&a)), ["pusher_internal:subscription_succeeded", "pusher:cache_miss"]);
    let frame = crate::pusher::messages::event("price", Some("cache-prices"), "42");
    cl.publish(1, "cache-prices", frame, None, Some("42".into()));
    cl.take(&a);
    let b = cl.connect(0);
    cl.subscribe(&b, "cache-prices", None);
    let out = cl.take(&b);
    assert_eq!(events(&out), ["pusher_internal:subscription_succeeded", "price"]);
    assert_eq!(out[1]["data"], "42");
}

#[test]
fn signin_then_server_to_user_delivery_and_termination() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(1);
    let user_data = r#"{"id":"u42","user_info":{"name":"Q"}}"#;
    let sig = auth::sign("app-secret", &[format!("{}::user::{user_data}", a.socket_id).as_bytes()]);
    cl.send_json(
        &a,
        json!({"event":"pusher:signin","data":{"auth": format!("app-key:{sig}"), "user_data": user_data}}),
    );
    let out = cl.take(&a);
    assert_eq!(out[0]["event"], "pusher:signin_success");
    assert_eq!(data_of(&out[0])["user_data"], user_data);
    cl.send_json(&a, json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-u42","auth":""}}));
    assert_eq!(events(&cl.take(&a)), ["pusher_internal:subscription_succeeded"]);
    let frame = crate::pusher::messages::event("dm", Some("#server-to-user-u42"), "hi");
    cl.publish(0, "#server-to-user-u42", frame, None, None);
    assert_eq!(cl.take(&a)[0]["data"], "hi");
    cl.cores[0].with_service(|s, e| s.terminate_user(e, APP, "u42"));
    cl.pump();
    let out = cl.take(&a);
    assert_eq!(out[0]["data"]["code"], 4009);
    assert_eq!(out[1]["close"], 4009);
}

#[test]
fn bad_signin_closes_with_4009() {
    let mut cl = Cluster::new(1, |_| {});
    let a = cl.connect(0);
    cl.send_json(
        &a,
        json!({"event":"pusher:signin","data":{"auth":"app-key:bad","user_data":"{\"id\":\"x\"}"}}),
    );
    let out = cl.take(&a);
    assert_eq!(out[0]["data"]["code"], 4009);
    assert_eq!(out[1]["close"], 4009);
}

#[test]
fn app_quota_is_exact_across_cores() {
    let mut cl = Cluster::new(2, |cfg| cfg.apps[0].max_connections = 2);
    let a = cl.connect(0);
    let b = cl.connect(1);
    assert!(!a.socket_id.is_empty() && !b.socket_id.is_empty());
    let c = cl.connect(0);
    let out = cl.take(&c);
    assert_eq!(out[0]["data"]["code"], 4004);
    assert_eq!(out[1]["close"], 4004);
    cl.remove(&c);
    // A connection that closes gives its place back.
    cl.remove(&b);
    let d = cl.connect(1);
    assert!(!d.socket_id.is_empty(), "admitted after a release");
}

#[test]
fn full_server_answers_pusher_clients_with_4100() {
    let mut cl = Cluster::new(1, |cfg| cfg.settings.max_connections = 1);
    let _a = cl.connect(0);
    let b = cl.connect(0);
    let out = cl.take(&b);
    assert_eq!(out[0]["data"]["code"], 4100);
    assert_eq!(out[1]["close"], 4100);
    assert_eq!(cl.cores[0].e.ws_count(), 1, "the refused connection is not counted");
}

#[test]
fn silent_pusher_client_is_pinged_then_closed_with_4201() {
    let mut cl = Cluster::new(1, |cfg| {
        cfg.settings.activity_timeout = 5;
        cfg.settings.pong_timeout = 2;
    });
    let a = cl.connect(0);
    cl.tick(0, 5);
    assert_eq!(events(&cl.take(&a)), ["pusher:ping"]);
    cl.tick(0, 7);
    let out = cl.take(&a);
    assert_eq!(out[0]["data"]["code"], 4201);
    assert_eq!(out[1]["close"], 4201);
}

#[test]
fn http_api_publishes_with_a_valid_signature_only() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(1);
    cl.subscribe(&a, "orders", None);
    cl.take(&a);
    let body = r#"{"name":"created","channels":["orders"],"data":"{\"id\":1}"}"#;
    let request = |cl: &mut Cluster, body: &str, ts: i64| cl.http(0, &signed_publish(body, ts));
    let resp = request(&mut cl, body, 1_700_000_000);
    assert!(resp.starts_with("HTTP/1.1 200 ") && resp.ends_with("{}"), "{resp}");
    let got = cl.take(&a);
    assert_eq!(got[0]["event"], "created");
    assert_eq!(got[0]["data"], "{\"id\":1}");
    let stale = request(&mut cl, body, 1_700_000_000 - 601);
    assert!(stale.starts_with("HTTP/1.1 401 "), "{stale}");
    let big = format!(r#"{{"name":"x","channel":"orders","data":"{}"}}"#, "a".repeat(10 * 1024 + 1));
    assert!(request(&mut cl, &big, 1_700_000_000).starts_with("HTTP/1.1 413 "));
    let too_many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let many = json!({"name":"x","channels":too_many,"data":"d"}).to_string();
    assert!(request(&mut cl, &many, 1_700_000_000).starts_with("HTTP/1.1 400 "));
}

/// Every webhook event the cores queued so far, in order.
fn hooks(logs: &mut [HookLog]) -> Vec<Value> {
    let mut out = Vec::new();
    for l in logs {
        for h in l.0.borrow_mut().drain(..) {
            out.push(serde_json::from_str(&h.event).unwrap());
        }
    }
    out
}

#[test]
fn occupancy_and_subscription_count_webhooks_fire_once_per_server() {
    let mut cl = Cluster::new(2, |cfg| {
        cfg.apps[0].webhooks = vec![Webhook::url("http://127.0.0.1:9/hooks")];
        cfg.apps[0].subscription_count_webhooks = true;
    });
    let mut rings = Vec::new();
    for core in &mut cl.cores {
        let log = HookLog::default();
        core.s.set_webhooks(Box::new(log.clone()));
        rings.push(log);
    }
    let a = cl.connect(0);
    let b = cl.connect(1);
    cl.subscribe(&a, "news", None);
    cl.subscribe(&b, "news", None);
    let got = hooks(&mut rings);
    let names: Vec<&str> = got.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["channel_occupied", "subscription_count", "subscription_count"], "{got:?}");
    assert_eq!(got[2]["subscription_count"], 2);
    cl.remove(&a);
    cl.remove(&b);
    let got = hooks(&mut rings);
    let names: Vec<&str> = got.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["subscription_count", "channel_vacated", "subscription_count"], "{got:?}");
    assert_eq!(got[2]["subscription_count"], 0);
}

/// Several publishes in one turn reach each subscriber in one send, in order, with the
/// exclusions of each publish applied inside the batch.
#[test]
fn publishes_in_one_turn_leave_in_one_send_with_exclusions_and_order() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(0);
    let b = cl.connect(1);
    let c = cl.connect(1);
    for x in [&a, &b, &c] {
        cl.subscribe(x, "news", None);
        cl.take(x);
    }
    let sends = |c: &Client| c.sock.0.borrow().sends;
    let before = [sends(&a), sends(&b), sends(&c)];
    let b_ref = SocketRef::parse(&b.socket_id).unwrap();
    // Five publishes from core 0 in one turn, the third excluding b; nothing is pumped between.
    cl.cores[0].with_service(|s, e| {
        for i in 0..5 {
            let frame = crate::pusher::messages::event("n", Some("news"), &i.to_string());
            s.publish(e, APP, "news", frame, (i == 2).then_some(b_ref), None);
        }
    });
    cl.pump();
    let got = |cl: &mut Cluster, x: &Client| -> Vec<Value> {
        cl.take(x).iter().map(|m| m["data"].clone()).collect()
    };
    assert_eq!(got(&mut cl, &a), ["0", "1", "2", "3", "4"]);
    assert_eq!(got(&mut cl, &b), ["0", "1", "3", "4"], "the exclusion applies inside the batch");
    assert_eq!(got(&mut cl, &c), ["0", "1", "2", "3", "4"]);
    assert_eq!(
        [sends(&a) - before[0], sends(&b) - before[1], sends(&c) - before[2]],
        [1, 1, 1],
        "one send each"
    );
}

/// A presence join in the same turn as other events: the joiner gets its confirmation, never its
/// own member_added, and the others get member_added in order with the events around it.
#[test]
fn member_added_inside_a_batch_skips_the_joiner_and_keeps_order() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(0);
    let j = cl.connect(1);
    cl.subscribe(&a, "presence-r", Some(r#"{"user_id":"a"}"#));
    cl.take(&a);
    // Queue an event, then the join (whose member_added goes out through the same turn), then
    // another event, before the flusher writes anything.
    cl.cores[0].with_service(|s, e| {
        let frame = crate::pusher::messages::event("before", Some("presence-r"), "1");
        s.publish(e, APP, "presence-r", frame, None, None);
    });
    let sig =
        auth::sign("app-secret", &[format!("{}:presence-r:{{\"user_id\":\"j\"}}", j.socket_id).as_bytes()]);
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": "presence-r", "auth": format!("app-key:{sig}"), "channel_data": r#"{"user_id":"j"}"#}});
    j.sock.push_input(&masked(sub.to_string().as_bytes()));
    cl.cores[1].run_conn_unflushed(j.key, &j.sock);
    cl.pump_messages();
    let sends = a.sock.0.borrow().sends;
    cl.cores[1].with_service(|s, e| {
        let frame = crate::pusher::messages::event("after", Some("presence-r"), "2");
        s.publish(e, APP, "presence-r", frame, None, None);
    });
    cl.pump();
    assert_eq!(a.sock.0.borrow().sends - sends, 1, "one send for the three");
    assert_eq!(events(&cl.take(&a)), ["before", "pusher_internal:member_added", "after"]);
    let joiner = events(&cl.take(&j));
    assert_eq!(joiner[0], "pusher_internal:subscription_succeeded");
    assert!(!joiner.iter().any(|e| e == "pusher_internal:member_added"), "{joiner:?}");
}

/// The `online` and `offline` user ids of a `pusher_internal:watchlist_events` message, sorted.
fn watch_lists(m: &Value) -> (Vec<String>, Vec<String>) {
    assert_eq!(m["event"], "pusher_internal:watchlist_events", "{m}");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for ev in data_of(m)["events"].as_array().unwrap() {
        let ids = ev["user_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string());
        match ev["name"].as_str().unwrap() {
            "online" => on.extend(ids),
            "offline" => off.extend(ids),
            other => panic!("unknown watchlist event {other}"),
        }
    }
    on.sort();
    off.sort();
    (on, off)
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn watchlist_gets_the_initial_state_then_changes_across_cores() {
    let mut cl = Cluster::new(2, |_| {});
    let bob = cl.connect(1);
    cl.signin(&bob, r#"{"id":"bob"}"#);
    cl.take(&bob);
    let ann = cl.connect(0);
    cl.signin(&ann, r#"{"id":"ann","watchlist":["bob","carl","dave","carl"]}"#);
    let out = cl.take(&ann);
    assert_eq!(
        events(&out),
        ["pusher:signin_success", "pusher_internal:watchlist_events"],
        "one initial event"
    );
    assert_eq!(watch_lists(&out[1]), (ids(&["bob"]), ids(&["carl", "dave"])));
    // Carl's first connection (either core) makes him online; his second changes nothing.
    let carl1 = cl.connect(1);
    cl.signin(&carl1, r#"{"id":"carl"}"#);
    let out = cl.take(&ann);
    assert_eq!(out.len(), 1);
    assert_eq!(watch_lists(&out[0]), (ids(&["carl"]), ids(&[])));
    let carl0 = cl.connect(0);
    cl.signin(&carl0, r#"{"id":"carl"}"#);
    assert!(cl.take(&ann).is_empty(), "a second tab changes nothing");
    cl.remove(&carl1);
    assert!(cl.take(&ann).is_empty(), "still online on the other core");
    cl.remove(&carl0);
    let out = cl.take(&ann);
    assert_eq!(watch_lists(&out[0]), (ids(&[]), ids(&["carl"])));
    // Bob is not watching anyone: he gets nothing about Ann.
    assert!(cl.take(&bob).is_empty());
    crate::pusher::check_watch_owners(&cl.cores);
    cl.remove(&ann);
    cl.remove(&bob);
    for core in &cl.cores {
        assert!(core.s.watched.iter().all(|m| m.is_empty()), "owner state forgotten");
    }
}

#[test]
fn watchlists_over_the_limit_or_malformed_are_refused_with_4009() {
    let mut cl = Cluster::new(1, |cfg| cfg.apps[0].max_watchlist_size = 2);
    let a = cl.connect(0);
    cl.signin(&a, r#"{"id":"a","watchlist":["b","c","d"]}"#);
    let out = cl.take(&a);
    assert_eq!(out[0]["data"]["code"], 4009);
    assert!(out[0]["data"]["message"].as_str().unwrap().contains("max_watchlist_size of 2"), "{}", out[0]);
    assert_eq!(out[1]["close"], 4009);
    let b = cl.connect(0);
    cl.signin(&b, r#"{"id":"b","watchlist":"c"}"#);
    assert_eq!(cl.take(&b)[1]["close"], 4009);
    let c = cl.connect(0);
    cl.signin(&c, r#"{"id":"c","watchlist":["ok","bad name"]}"#);
    assert_eq!(cl.take(&c)[1]["close"], 4009);
    // Duplicates count once.
    let d = cl.connect(0);
    cl.signin(&d, r#"{"id":"d","watchlist":["x","y","x"]}"#);
    assert_eq!(events(&cl.take(&d)), ["pusher:signin_success", "pusher_internal:watchlist_events"]);
}

#[test]
fn watchlist_events_off_sends_nothing_and_tracks_nobody() {
    let mut cl = Cluster::new(2, |cfg| cfg.apps[0].watchlist_events = false);
    let a = cl.connect(0);
    cl.signin(&a, r#"{"id":"a","watchlist":["b"]}"#);
    let b = cl.connect(1);
    cl.signin(&b, r#"{"id":"b"}"#);
    assert_eq!(events(&cl.take(&a)), ["pusher:signin_success"]);
    assert!(cl.cores.iter().all(|c| c.s.watched.iter().all(|m| m.is_empty()) && c.s.watchlists.is_empty()));
}

/// A core's messages to the Redis bridge, kept in the test.
#[derive(Clone, Default)]
struct BridgeLog(Rc<RefCell<Vec<crate::pusher::wire::ClusterOut>>>);

impl Outlet<crate::pusher::wire::ClusterOut> for BridgeLog {
    fn push(&mut self, msg: crate::pusher::wire::ClusterOut) -> Result<(), crate::pusher::wire::ClusterOut> {
        self.0.borrow_mut().push(msg);
        Ok(())
    }
}

/// Regression guard for the cluster's ordering: answers and bus messages about a user may
/// arrive in any order; the owner keeps the state with the highest sequence, and a watcher's
/// initial state waits for the cluster's answer.
#[test]
fn watchlist_state_follows_the_cluster_sequence_not_arrival_order() {
    use crate::pusher::wire::{ClusterIn, ClusterOut};
    let mut cl = Cluster::new(1, |_| {});
    let log = BridgeLog::default();
    cl.cores[0].s.set_cluster(Box::new(log.clone()));
    let ann = cl.connect(0);
    cl.signin(&ann, r#"{"id":"ann","watchlist":["bob"]}"#);
    assert_eq!(events(&cl.take(&ann)), ["pusher:signin_success"], "the initial state waits for Redis");
    let asked: Vec<ClusterOut> = log.0.borrow_mut().drain(..).collect();
    assert!(
        asked
            .iter()
            .any(|m| matches!(m, ClusterOut::UserOnline { user, online: true, .. } if &**user == "ann"))
    );
    assert!(asked.iter().any(
        |m| matches!(m, ClusterOut::UserStatus { users, .. } if users.len() == 1 && &*users[0] == "bob")
    ));
    let feed = |cl: &mut Cluster, msg: ClusterIn| {
        cl.cores[0].with_service(|s, e| s.on_cluster(e, msg));
        cl.pump();
    };
    // Bob came online on another node (seq 20) before the status answer (as of seq 10).
    feed(&mut cl, ClusterIn::UserOnline { app: APP, user: "bob".into(), online: true, seq: Some(20) });
    assert!(cl.take(&ann).is_empty());
    feed(
        &mut cl,
        ClusterIn::UserStatus { app: APP, users: vec!["bob".into()], answer: Some((10, vec![false])) },
    );
    let out = cl.take(&ann);
    assert_eq!(watch_lists(&out[0]), (ids(&["bob"]), ids(&[])), "the newer state wins");
    // A stale offline (seq 15) is ignored; a newer one (seq 30) is told.
    feed(&mut cl, ClusterIn::UserOnline { app: APP, user: "bob".into(), online: false, seq: Some(15) });
    assert!(cl.take(&ann).is_empty());
    feed(&mut cl, ClusterIn::UserOnline { app: APP, user: "bob".into(), online: false, seq: Some(30) });
    assert_eq!(watch_lists(&cl.take(&ann)[0]), (ids(&[]), ids(&["bob"])));
    // Redis unreachable (no sequence): this node's decision stands.
    feed(&mut cl, ClusterIn::UserOnline { app: APP, user: "bob".into(), online: true, seq: None });
    assert_eq!(watch_lists(&cl.take(&ann)[0]), (ids(&["bob"]), ids(&[])));
}

#[test]
fn watchlist_initial_state_falls_back_to_this_node_when_the_cluster_is_silent() {
    let mut cl = Cluster::new(2, |_| {});
    for core in &mut cl.cores {
        core.s.set_cluster(Box::new(BridgeLog::default()));
    }
    let bob = cl.connect(1);
    cl.signin(&bob, r#"{"id":"bob"}"#);
    let ann = cl.connect(0);
    cl.signin(&ann, r#"{"id":"ann","watchlist":["bob","zed"]}"#);
    assert_eq!(events(&cl.take(&ann)), ["pusher:signin_success"]);
    for core in 0..2 {
        cl.tick(core, crate::pusher::QUESTION_TIMEOUT);
    }
    let out = cl.take(&ann);
    assert_eq!(watch_lists(&out[0]), (ids(&["bob"]), ids(&["zed"])), "answered by the deadline");
}

#[test]
fn unauthorized_connections_are_closed_after_the_timeout() {
    let mut cl = Cluster::new(2, |cfg| cfg.apps[0].authorized_connections_timeout = 30);
    let idle = cl.connect(0);
    let public = cl.connect(1);
    let signed = cl.connect(0);
    let private = cl.connect(1);
    let presence = cl.connect(0);
    cl.subscribe(&public, "news", None);
    cl.signin(&signed, r#"{"id":"s"}"#);
    cl.subscribe(&private, "private-p", None);
    cl.subscribe(&presence, "presence-room", Some(r#"{"user_id":"p"}"#));
    for c in [&idle, &public, &signed, &private, &presence] {
        cl.take(c);
    }
    for core in 0..2 {
        cl.tick(core, 29);
    }
    assert!(cl.take(&idle).is_empty(), "not before the timeout");
    for core in 0..2 {
        cl.tick(core, 30);
    }
    for c in [&idle, &public] {
        let out = cl.take(c);
        assert_eq!(out[0]["data"]["code"], 4009);
        assert!(out[0]["data"]["message"].as_str().unwrap().contains("within 30 seconds"), "{}", out[0]);
        assert_eq!(out[1]["close"], 4009);
    }
    for c in [&signed, &private, &presence] {
        assert!(cl.take(c).is_empty(), "authorized connections stay");
    }
    let closed: u64 = cl.cores.iter().map(|c| c.s.stats.unauthorized_closed).sum();
    assert_eq!(closed, 2);
}

#[test]
fn subscription_counts_reach_subscribers_at_most_once_per_interval() {
    let mut cl = Cluster::new(2, |cfg| {
        cfg.apps[0].subscription_count_events = true;
        cfg.apps[0].subscription_count_interval = 5;
    });
    let count_of = |msgs: &[Value]| -> Vec<u64> {
        msgs.iter()
            .filter(|m| m["event"] == "pusher_internal:subscription_count")
            .map(|m| data_of(m)["subscription_count"].as_u64().unwrap())
            .collect()
    };
    let a = cl.connect(0);
    cl.subscribe(&a, "news", None);
    let out = cl.take(&a);
    assert_eq!(
        events(&out),
        ["pusher_internal:subscription_succeeded", "pusher_internal:subscription_count"]
    );
    assert_eq!(out[1]["channel"], "news");
    assert_eq!(count_of(&out), [1], "the first change goes out at once");
    let b = cl.connect(1);
    let c = cl.connect(1);
    cl.subscribe(&b, "news", None);
    cl.subscribe(&c, "news", None);
    cl.remove(&c);
    let d = cl.connect(0);
    cl.subscribe(&d, "news", None);
    assert!(count_of(&cl.take(&a)).is_empty(), "later changes wait for the interval");
    for core in 0..2 {
        cl.tick(core, 4);
    }
    assert!(count_of(&cl.take(&a)).is_empty());
    for core in 0..2 {
        cl.tick(core, 5);
    }
    assert_eq!(count_of(&cl.take(&a)), [3], "folded into one event");
    assert_eq!(count_of(&cl.take(&b)), [3], "on every core");
    assert_eq!(count_of(&cl.take(&d)), [3]);
    // On a single core too, the confirmation comes before the count it causes.
    let mut one = Cluster::new(1, |cfg| cfg.apps[0].subscription_count_events = true);
    let solo = one.connect(0);
    one.subscribe(&solo, "news", None);
    let out = one.take(&solo);
    assert_eq!(
        events(&out),
        ["pusher_internal:subscription_succeeded", "pusher_internal:subscription_count"]
    );
    // Presence channels have no live counts.
    let p = cl.connect(0);
    cl.subscribe(&p, "presence-x", Some(r#"{"user_id":"p"}"#));
    assert!(count_of(&cl.take(&p)).is_empty());
    // The HTTP API says the same.
    for core in 0..2 {
        cl.tick(core, 20);
    }
    let resp = cl.cores[0].with_service(|s, e| {
        let q = std::sync::Arc::new(crate::pusher::query::ChannelQuery {
            app: APP,
            filter: crate::pusher::query::Filter::Names(vec!["news".into()]),
            members: false,
        });
        s.answer(e, &crate::pusher::query::Question::Channels(q))
    });
    let crate::pusher::query::Answer::Channels(rows) = resp else { panic!() };
    assert_eq!(rows["news"].subscriptions, 2, "core 0's share");
    // Everyone leaves: the owner forgets the channel after an interval.
    for c in [&a, &b, &d, &p] {
        cl.remove(c);
    }
    for core in 0..2 {
        cl.tick(core, 30);
    }
    assert!(cl.cores.iter().all(|c| c.s.counts.iter().all(|m| m.is_empty()) && c.s.counts_due.is_empty()));
}

#[test]
fn origins_outside_allowed_origins_get_4009_and_are_counted() {
    let mut cl = Cluster::new(1, |cfg| {
        cfg.apps[0].allowed_origins = vec!["https://*.example.com".into(), "localhost:3000".into()];
    });
    let with_origin = |o: &str| UPGRADE.replace("Host: h\r\n", &format!("Host: h\r\nOrigin: {o}\r\n"));
    let ok = cl.connect_with(0, &with_origin("https://app.example.com"));
    assert!(!ok.socket_id.is_empty());
    let ok = cl.connect_with(0, &with_origin("http://localhost:3000"));
    assert!(!ok.socket_id.is_empty());
    for bad in [Some("https://evil.com"), Some("http://app.example.com"), None] {
        let req = bad.map_or_else(|| UPGRADE.to_string(), with_origin);
        let c = cl.connect_with(0, &req);
        let out = cl.take(&c);
        assert_eq!(out[0]["event"], "pusher:error");
        assert_eq!(out[0]["data"]["code"], 4009);
        assert!(out[0]["data"]["message"].as_str().unwrap().starts_with("Origin not allowed"), "{}", out[0]);
        assert_eq!(out[1]["close"], 4009);
    }
    assert_eq!(cl.cores[0].s.stats.origin_refused, 3);
    assert_eq!(cl.cores[0].e.ws_count(), 2, "refused connections are not counted");
}

#[test]
fn webhook_events_no_receiver_wants_are_not_queued() {
    let mut cl = Cluster::new(1, |cfg| {
        let mut w = Webhook::url("http://127.0.0.1:9/hooks");
        w.event_types = vec!["member_added".into()];
        w.filter.channel_name_starts_with = Some("presence-".into());
        cfg.apps[0].webhooks = vec![w];
    });
    let log = HookLog::default();
    cl.cores[0].s.set_webhooks(Box::new(log.clone()));
    let a = cl.connect(0);
    let b = cl.connect(0);
    cl.subscribe(&a, "presence-room", Some(r#"{"user_id":"a"}"#));
    cl.subscribe(&b, "presence-room", Some(r#"{"user_id":"b"}"#));
    cl.send_json(&a, json!({"event":"client-x","channel":"presence-room","data":{}}));
    cl.subscribe(&a, "private-other", None);
    let got = hooks(&mut [log]);
    let names: Vec<&str> = got.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["member_added", "member_added"], "{got:?}");
}

/// Rings between two test cores with their message counts, as the shard's mesh has them: the
/// test decides when each message is handled.
#[derive(Clone, Default)]
struct TestRings(
    Rc<RefCell<[[std::collections::VecDeque<crate::pusher::peer::PeerMsg>; 2]; 2]>>,
    Rc<RefCell<[[u64; 2]; 2]>>,
);

struct TestLink {
    me: usize,
    rings: TestRings,
}

impl crate::core::io::PeerLink<crate::pusher::peer::PeerMsg> for TestLink {
    fn try_send(
        &self,
        peer: CoreId,
        msg: crate::pusher::peer::PeerMsg,
    ) -> Result<(), crate::pusher::peer::PeerMsg> {
        self.rings.0.borrow_mut()[self.me][peer.index()].push_back(msg);
        self.rings.1.borrow_mut()[self.me][peer.index()] += 1;
        Ok(())
    }

    fn pushed_from(&self, peer: CoreId) -> u64 {
        self.rings.1.borrow()[peer.index()][self.me]
    }
}

/// A signed publish of `name` to `orders`.
fn publish_request(name: &str) -> String {
    signed_publish(&format!(r#"{{"name":"{name}","channels":["orders"],"data":"{{}}"}}"#), 1_700_000_000)
}

/// `POST /apps/1/events` with `body`, signed at `ts` with the development app's secret.
fn signed_publish(body: &str, ts: i64) -> String {
    let md5 = format!("{:x}", md5::compute(body));
    let q = format!("auth_key=app-key&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
    let sig = auth::sign("app-secret", &[format!("POST\n/apps/1/events\n{q}").as_bytes()]);
    format!(
        "POST /apps/1/events?{q}&auth_signature={sig} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A backend publishes `first` through core 0, gets its answer, then `second` through core 1:
/// core 1 holds the second request until it has handled what core 0 had put on its ring, so
/// the subscriber on core 1 gets `first` before `second`.
#[test]
fn regression_a_publish_waits_for_what_other_cores_had_already_sent() {
    let mut cl = Cluster::new(2, |_| {});
    let a = cl.connect(1);
    cl.subscribe(&a, "orders", None);
    cl.take(&a);
    let rings = TestRings::default();
    for (i, core) in cl.cores.iter_mut().enumerate() {
        core.e.set_peer_link(Box::new(TestLink { me: i, rings: rings.clone() }));
    }
    // First publish on core 0: answered as soon as the event is on core 1's ring.
    let (k0, s0) = cl.cores[0].accept_fake();
    s0.push_input(publish_request("first").as_bytes());
    cl.cores[0].run_conn(k0, &s0);
    let resp = s0.take_text();
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert_eq!(rings.0.borrow()[0][1].len(), 1, "the event waits on core 1's ring");
    // Second publish on core 1 before core 1 handled the first: held, nothing delivered.
    let (k1, s1) = cl.cores[1].accept_fake();
    s1.push_input(publish_request("second").as_bytes());
    cl.cores[1].run_conn(k1, &s1);
    assert_eq!(s1.take_text(), "", "held until core 1 caught up");
    assert!(cl.take(&a).is_empty(), "the second event must not overtake the first");
    // Core 1 handles its ring: the first event, then the held request goes through.
    let msg = rings.0.borrow_mut()[0][1].pop_front().unwrap();
    cl.cores[1].on_peer(CoreId(0), msg);
    cl.cores[1].flush_all();
    let resp = s1.take_text();
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    let names: Vec<Value> = cl.take(&a).iter().map(|m| m["event"].clone()).collect();
    assert_eq!(names, vec![json!("first"), json!("second")]);
}
