//! permessage-deflate (RFC 7692) through the real binary with raw sockets: what is negotiated,
//! that a publish goes out compressed to the subscribers that negotiated it (one shared copy)
//! and plain to the others, and that limits apply to the inflated size.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use corecast::protocol::deflate::{Deflater, Inflater};
use corecast::protocol::frame::Opcode;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Opens a Pusher WebSocket, offering permessage-deflate or not; returns the stream and the 101.
fn connect(addr: &str, offer: bool) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = upgrade_request("/app/app-key?protocol=7");
    if offer {
        req = req.replace("\r\n\r\n", &format!("\r\n{OFFER}\r\n"));
    }
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (s, head)
}

/// One server frame: (first byte, payload).
fn frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("a frame");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// The text of a frame: inflated when RSV1 is set.
fn text(b0: u8, payload: &[u8]) -> String {
    if b0 & 0x40 != 0 {
        let mut inflater = Inflater::new();
        String::from_utf8(inflater.inflate(payload, 1 << 20).unwrap().to_vec()).unwrap()
    } else {
        String::from_utf8(payload.to_vec()).unwrap()
    }
}

/// Subscribes to `channel` and waits for the confirmation.
fn subscribe(s: &mut TcpStream, channel: &str) {
    let (b0, p) = frame(s);
    assert!(text(b0, &p).contains("pusher:connection_established"));
    let msg = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
    s.write_all(&client_frame(true, 1, msg.as_bytes(), Some([1, 2, 3, 4]))).unwrap();
    let (b0, p) = frame(s);
    assert!(text(b0, &p).contains("pusher_internal:subscription_succeeded"), "{}", text(b0, &p));
}

/// A JSON event body of about 4 KB, as compressible as typical events.
fn event_data() -> String {
    let rows: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"id":{i},"user":"user-{}","status":"online","room":"lobby"}}"#, i % 7))
        .collect();
    format!("[{}]", rows.join(","))
}

#[test]
fn compression_is_off_unless_enabled() {
    let server = Server::start(&["--cores", "1"]);
    let (_s, head) = connect(&server.addr(), true);
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
}

#[test]
fn negotiation_answers_without_context_takeover() {
    let server = Server::start(&["--cores", "1", "--permessage-deflate"]);
    let (_s, head) = connect(&server.addr(), true);
    let ext = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-extensions:"))
        .unwrap_or_else(|| panic!("no extension accepted: {head}"));
    assert!(ext.contains("permessage-deflate"), "{ext}");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");
    let (_plain, head) = connect(&server.addr(), false);
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
    let m = scrape(&server.addr());
    assert_eq!(metric(&m, "corecast_deflate_negotiated_total"), Some(1.0), "{m}");
}

/// Two compressing subscribers (on two cores, as the kernel spreads them) and one plain one: the compressed ones get
/// the same shared bytes (RSV1), which inflate to exactly the plain subscriber's frame.
#[test]
fn publish_is_compressed_for_subscribers_that_negotiated_it_and_plain_for_others() {
    let server = Server::start(&["--cores", "2", "--permessage-deflate"]);
    let addr = server.addr();
    let mut a = connect(&addr, true).0;
    let mut b = connect(&addr, true).0;
    let mut plain = connect(&addr, false).0;
    for s in [&mut a, &mut b, &mut plain] {
        subscribe(s, "feed");
    }
    let data = event_data();
    let (status, body) = publish(&addr, &["feed"], "update", &data);
    assert!(status.contains(" 200 "), "{status} {body}");
    let (pb0, pp) = frame(&mut plain);
    assert_eq!(pb0, 0x81, "plain text frame, RSV1 clear");
    let expected = String::from_utf8(pp.clone()).unwrap();
    assert!(expected.contains(r#""event":"update""#), "{expected}");
    let (ab0, ap) = frame(&mut a);
    let (bb0, bp) = frame(&mut b);
    assert_eq!(ab0, 0xC1, "compressed text frame (FIN, RSV1)");
    assert_eq!(bb0, 0xC1);
    assert_eq!(ap, bp, "one compressed copy for every subscriber that negotiated it");
    assert!(ap.len() * 3 < pp.len(), "{} compressed bytes for {} plain", ap.len(), pp.len());
    assert_eq!(text(ab0, &ap), expected);
    let m = scrape(&addr);
    assert_eq!(metric(&m, "corecast_deflate_frames_total"), Some(2.0), "{m}");
    let saved = metric(&m, "corecast_deflate_bytes_saved_total").unwrap();
    assert_eq!(saved as usize, 2 * (pp.len() - ap.len() + frame_header_gap(pp.len(), ap.len())));
}

/// Header bytes the shorter frame saves (a 4 KB payload takes a 4-byte header, a short one 2).
fn frame_header_gap(plain: usize, compressed: usize) -> usize {
    let header = |n: usize| {
        if n < 126 {
            2
        } else if n <= 0xffff {
            4
        } else {
            10
        }
    };
    header(plain) - header(compressed)
}

/// A small compressed message that inflates beyond the message limit: closed with 1009, not
/// inflated without bound.
#[test]
fn regression_zip_bomb_is_closed_with_1009() {
    let server = Server::start(&["--cores", "1", "--permessage-deflate"]);
    let (mut s, _) = connect(&server.addr(), true);
    let _ = frame(&mut s);
    let bomb = vec![b' '; 4 << 20];
    let compressed = Deflater::new().frame_if_smaller(Opcode::Text, &bomb).unwrap();
    // The server frame's payload (after its 10-byte header for this size), sent masked.
    let f = &compressed.frame;
    let payload = match f[1] & 0x7f {
        126 => &f[4..],
        127 => &f[10..],
        _ => &f[2..],
    };
    assert!(payload.len() < 16 * 1024, "{} bytes", payload.len());
    let mut out = client_frame(true, 1, payload, Some([9, 8, 7, 6]));
    out[0] |= 0x40;
    s.write_all(&out).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1009));
}
