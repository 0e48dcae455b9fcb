//! Bodies of the fuzz targets (fuzz/fuzz_targets/*), kept in the library so that the committed
//! seed corpora also run as ordinary tests on the stable toolchain (tests/fuzz_corpus.rs).
//! Each body panics when an invariant breaks.

use super::decoder::{self, Event, Limits};
use super::deflate::{Deflater, InflateError, Inflater};
use super::{handshake, http};

/// The HTTP head parser and the upgrade validator never panic, and agree with themselves: a
/// head that parses yields a length within the input, and an accepted upgrade has a key.
pub fn handshake(data: &[u8]) {
    match http::parse(data) {
        Ok(Some(req)) => {
            assert!(req.head_len <= data.len());
            let _ = req.content_length();
            let _ = req.keep_alive();
            if let Ok(accept) = handshake::accept_key(&req) {
                assert_eq!(accept.len(), 28, "a base64 SHA-1");
                assert!(req.header("Sec-WebSocket-Key").is_some());
            }
        }
        Ok(None) => assert!(data.len() < http::MAX_HEAD),
        Err(e) => assert!(matches!(e.status(), 400 | 411 | 431)),
    }
}

/// The frame decoder never panics, and decoding the input in two pieces (split where the first
/// byte says) gives the same events and the same outcome as decoding it whole.
pub fn frame_decoder(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let limits = Limits { max_frame: 1 << 16, max_message: 1 << 17 };
    let split = data[0] as usize * data.len() / 256;
    let input = &data[1..];
    let whole = run(input, &[], &limits);
    let pieces = run(input, &[split.min(input.len())], &limits);
    assert_eq!(whole, pieces);
}

/// The receive path of a connection that negotiated permessage-deflate: never panics, decoding
/// in two pieces equals decoding whole, no message exceeds the limit once inflated. The same
/// bytes as one compressed payload: the inflater keeps to its limit, and what it yields
/// survives a round trip through the deflater.
pub fn deflate_decoder(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let limits = Limits { max_frame: 1 << 12, max_message: 1 << 14 };
    let split = data[0] as usize * data.len() / 256;
    let input = &data[1..];
    let mut inflater = Inflater::new();
    let whole = run_with(input, &[], &limits, Some(&mut inflater));
    let pieces = run_with(input, &[split.min(input.len())], &limits, Some(&mut inflater));
    assert_eq!(whole, pieces);
    for (_, payload) in &whole.0 {
        assert!(payload.len() <= limits.max_message);
    }

    let limit = 1 << 14;
    match inflater.inflate(input, limit) {
        Ok(out) => {
            assert!(out.len() <= limit);
            let out = out.to_vec();
            let again = Deflater::new().compress_payload(&out).to_vec();
            assert_eq!(inflater.inflate(&again, limit).expect("own output inflates"), &out[..]);
        }
        Err(InflateError::TooBig | InflateError::Corrupt) => {}
    }
    assert!(inflater.scratch_bytes() <= limit + 1, "the scratch stays within the limit");
}

type Outcome = (Vec<(u8, Vec<u8>)>, String);

fn run(input: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    run_with(input, cuts, limits, None)
}

fn run_with(input: &[u8], cuts: &[usize], limits: &Limits, mut inflater: Option<&mut Inflater>) -> Outcome {
    let mut state = None;
    let mut events = Vec::new();
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(input.len());
    let mut outcome = String::from("open");
    for w in bounds.windows(2) {
        let mut chunk = input[w[0]..w[1]].to_vec();
        let r = decoder::decode_with(&mut state, &mut chunk, limits, inflater.as_deref_mut(), |e| {
            events.push(match e {
                Event::Text(t) => {
                    assert!(std::str::from_utf8(t).is_ok(), "text events are valid UTF-8");
                    (1, t.to_vec())
                }
                Event::Binary(b) => (2, b.to_vec()),
                Event::Ping(b) => (9, b.to_vec()),
                Event::Pong(b) => (10, b.to_vec()),
                Event::Close(c) => (8, c.map_or(vec![], |c| c.to_be_bytes().to_vec())),
            })
        });
        match r {
            Ok(decoder::Status::Open) => {}
            Ok(decoder::Status::Closed) => {
                outcome = "closed".into();
                break;
            }
            Err(f) => {
                outcome = format!("failed {}", f.close_code());
                break;
            }
        }
    }
    (events, outcome)
}
