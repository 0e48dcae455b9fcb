//! Criterion micro-benchmarks for the hot pure code: frame decoding, unmasking, UTF-8
//! validation, request-head parsing and the handshake, frame encoding, Pusher event encoding
//! and channel-authorization checks, permessage-deflate compression and inflation.

use std::hint::black_box;

use corecast::protocol::decoder::{self, Limits};
use corecast::protocol::deflate::{Deflater, Inflater};
use corecast::protocol::{frame, handshake, http, utf8};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame::encode_client(true, opcode, payload, [0x37, 0xfa, 0x21, 0x3d])
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("decode");
    let small =
        client_frame(1, br#"{"event":"client-typing","channel":"private-chat","data":{"user":"42"}}"#);
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("text_70B", |b| {
        let mut buf = small.clone();
        b.iter(|| {
            buf.copy_from_slice(&small);
            let mut state = None;
            decoder::decode(&mut state, black_box(&mut buf), &limits, |e| {
                black_box(e);
            })
            .unwrap()
        })
    });
    let big = client_frame(2, &vec![7u8; 16 * 1024]);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("binary_16KiB", |b| {
        let mut buf = big.clone();
        b.iter(|| {
            buf.copy_from_slice(&big);
            let mut state = None;
            decoder::decode(&mut state, black_box(&mut buf), &limits, |e| {
                black_box(e);
            })
            .unwrap()
        })
    });
    let many: Vec<u8> = (0..100).flat_map(|_| small.clone()).collect();
    g.throughput(Throughput::Elements(100));
    g.bench_function("100_text_frames_in_one_read", |b| {
        let mut buf = many.clone();
        b.iter(|| {
            buf.copy_from_slice(&many);
            let mut state = None;
            decoder::decode(&mut state, black_box(&mut buf), &limits, |e| {
                black_box(e);
            })
            .unwrap()
        })
    });
    g.finish();
}

fn unmask_and_utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("bytes");
    let mut data = vec![0x5au8; 64 * 1024];
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("unmask_64KiB", |b| b.iter(|| frame::unmask(black_box(&mut data), [1, 2, 3, 4], 0)));
    let text = "Grüße, κόσμε, こんにちは! ".repeat(2048);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("utf8_validate_mixed", |b| {
        b.iter(|| utf8::validate_complete(black_box(text.as_bytes())))
    });
    g.finish();
}

fn handshake_parse(c: &mut Criterion) {
    let req = b"GET /app/app-key?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\nHost: localhost:6001\r\n\
Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Origin: http://localhost:8000\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    c.bench_function("handshake/parse_and_accept", |b| {
        b.iter(|| {
            let parsed = http::parse(black_box(req)).unwrap().unwrap();
            let accept = handshake::accept_key(&parsed).unwrap();
            handshake::switching_protocols(&accept)
        })
    });
}

fn encode(c: &mut Criterion) {
    let payload =
        br#"{"event":"message","channel":"chat","data":"{\"text\":\"hello world\",\"user\":\"42\"}"}"#;
    c.bench_function("encode/text_frame_90B", |b| {
        b.iter(|| frame::encode(frame::Opcode::Text, black_box(payload)))
    });
}

fn pusher(c: &mut Criterion) {
    use corecast::pusher::{auth, messages};
    let data = r#"{"text":"hello world","user":{"id":"42","name":"Ann"},"sent_at":1732300000}"#;
    c.bench_function("pusher/encode_event_frame", |b| {
        b.iter(|| {
            messages::event(black_box("message"), Some(black_box("presence-chat-room")), black_box(data))
        })
    });
    // The largest event Pusher accepts by default (10 KiB of data).
    let big = "x".repeat(10 * 1024);
    c.bench_function("pusher/encode_event_frame_10KiB", |b| {
        b.iter(|| messages::event(black_box("message"), Some(black_box("chat")), black_box(&big)))
    });
    c.bench_function("pusher/parse_subscribe", |b| {
        let msg = br#"{"event":"pusher:subscribe","data":{"auth":"app-key:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","channel":"private-orders"}}"#;
        b.iter(|| {
            let m = messages::parse_client(black_box(msg)).unwrap();
            messages::parse_data::<messages::SubscribeData>(m.data)
        })
    });
    let sig = auth::sign("app-secret", &[b"1234.1234:private-orders"]);
    let good = format!("app-key:{sig}");
    c.bench_function("pusher/channel_auth_check", |b| {
        b.iter(|| {
            auth::channel_auth_ok(
                "app-key",
                "app-secret",
                black_box("1234.1234"),
                "private-orders",
                None,
                black_box(&good),
            )
        })
    });
}

/// Pusher events as they go out (`{"event":…,"channel":…,"data":"<JSON as a string>"}`): a
/// ~100-byte chat message, and price updates of ~1 KB and ~9 KB.
fn pusher_events() -> Vec<(&'static str, Vec<u8>)> {
    let item = |i: usize| {
        format!(
            r#"{{\"id\":{},\"symbol\":\"SYM{}\",\"price\":{}.{:02},\"change\":-0.{:02},\"volume\":{},\"updated_at\":\"2026-11-22T10:{:02}:00Z\"}}"#,
            1000 + i,
            i * 7 % 26,
            100 + i * 13,
            i * 17 % 100,
            i * 3 % 100,
            10000 + i * 977,
            i % 60
        )
    };
    let prices = |n: usize| {
        let items: Vec<String> = (0..n).map(item).collect();
        format!(
            r#"{{"event":"prices-updated","channel":"private-market-feed","data":"{{\"items\":[{}]}}"}}"#,
            items.join(",")
        )
        .into_bytes()
    };
    let chat = br#"{"event":"message","channel":"presence-chat-room","data":"{\"text\":\"hello world\",\"user\":{\"id\":\"42\"}}"}"#;
    vec![("event_100B", chat.to_vec()), ("event_1KB", prices(6)), ("event_9KB", prices(70))]
}

fn deflate(c: &mut Criterion) {
    let events = pusher_events();
    let mut g = c.benchmark_group("deflate");
    for (name, ev) in &events {
        for level in [1u8, 3, 6] {
            let mut d = Deflater::with_level(level);
            let wire = d.compress_payload(ev).len();
            eprintln!(
                "deflate/{name} level {level}: {} B -> {wire} B on the wire ({:.0} %)",
                ev.len(),
                100.0 * wire as f64 / ev.len() as f64
            );
            g.throughput(Throughput::Bytes(ev.len() as u64));
            g.bench_function(format!("compress_{name}_level{level}"), |b| {
                b.iter(|| d.frame(frame::Opcode::Text, black_box(ev)))
            });
        }
        let wire = Deflater::new().compress_payload(ev).to_vec();
        let mut inf = Inflater::new();
        g.bench_function(format!("inflate_{name}"), |b| {
            b.iter(|| inf.inflate(black_box(&wire), 1 << 16).unwrap().len())
        });
        // The whole receive path: a masked compressed frame through the decoder.
        let mut f = frame::encode_client(true, 1, &wire, [0x37, 0xfa, 0x21, 0x3d]);
        f[0] |= 0x40;
        let limits = Limits::default();
        g.bench_function(format!("decode_compressed_{name}"), |b| {
            let mut buf = f.clone();
            b.iter(|| {
                buf.copy_from_slice(&f);
                let mut state = None;
                decoder::decode_with(&mut state, black_box(&mut buf), &limits, Some(&mut inf), |e| {
                    black_box(e);
                })
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, unmask_and_utf8, handshake_parse, encode, pusher, deflate);
criterion_main!(benches);
