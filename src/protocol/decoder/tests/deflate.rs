//! The receive path on connections that negotiated permessage-deflate (RFC 7692).

use super::*;
use crate::protocol::deflate::{Deflater, compressed_bound};
use crate::protocol::frame::{Opcode, payload_of};

/// A masked client frame with RSV1 set ("Per-Message Compressed").
fn rsv1_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = client_frame(fin, opcode, payload, mask);
    f[0] |= 0x40;
    f
}

/// Like `run_split`, on a connection that negotiated permessage-deflate.
fn run_deflate(bytes: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    run_split_with(bytes, cuts, limits, Some(&mut Inflater::new()))
}

fn run_d(bytes: &[u8]) -> Outcome {
    run_deflate(bytes, &[], &Limits::default())
}

fn code(outcome: Outcome) -> u16 {
    outcome.1.unwrap_err().close_code()
}

fn text(s: &str) -> Vec<Owned> {
    vec![Owned::Text(s.as_bytes().to_vec())]
}

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rfc_7692_single_frame_and_fragmented_hello() {
    // §7.2.3.1: 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00 (here masked, as from a client).
    assert_eq!(run_d(&rsv1_frame(true, 1, &HELLO, M)), (text("Hello"), Ok(Status::Open)));
    // The same message in two fragments: 0x41 0x03 0xf2 0x48 0xcd, then 0x80 0x04 0xc9 0xc9 0x07 0x00.
    let mut bytes = rsv1_frame(false, 1, &HELLO[..3], M);
    bytes.extend(client_frame(true, 0, &HELLO[3..], M));
    assert_eq!(&bytes[..2], &[0x41, 0x83]);
    assert_eq!(bytes[9], 0x80);
    assert_eq!(run_d(&bytes), (text("Hello"), Ok(Status::Open)));
}

#[test]
fn rfc_7692_block_forms() {
    // §7.2.3.3 no compression, §7.2.3.4 BFINAL set, §7.2.3.5 two blocks.
    for payload in [
        &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00][..],
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
    ] {
        assert_eq!(run_d(&rsv1_frame(true, 1, payload, M)).0, text("Hello"));
    }
}

#[test]
fn empty_compressed_messages() {
    // §7.2.3.6's single 0x00, and a zero-length payload.
    assert_eq!(run_d(&rsv1_frame(true, 1, &[0x00], M)).0, text(""));
    assert_eq!(run_d(&rsv1_frame(true, 2, &[], M)).0, vec![Owned::Binary(vec![])]);
    // A compressed message whose last fragment is empty.
    let mut bytes = rsv1_frame(false, 1, &HELLO, M);
    bytes.extend(client_frame(true, 0, &[], M));
    assert_eq!(run_d(&bytes).0, text("Hello"));
}

#[test]
fn uncompressed_messages_still_pass_on_a_deflate_connection() {
    let mut bytes = client_frame(true, 1, b"plain", M);
    bytes.extend(rsv1_frame(true, 1, &HELLO, M));
    bytes.extend(client_frame(true, 2, &[1, 2, 3], M));
    let (ev, r) = run_d(&bytes);
    assert_eq!(
        ev,
        vec![Owned::Text(b"plain".to_vec()), Owned::Text(b"Hello".to_vec()), Owned::Binary(vec![1, 2, 3])]
    );
    assert_eq!(r, Ok(Status::Open));
}

#[test]
fn rsv1_without_the_extension_is_1002() {
    assert_eq!(code(run(&rsv1_frame(true, 1, &HELLO, M))), 1002);
}

#[test]
fn rsv1_on_control_or_continuation_frames_is_1002() {
    for op in [8, 9, 10] {
        assert_eq!(code(run_d(&rsv1_frame(true, op, b"", M))), 1002, "opcode {op}");
    }
    // Continuation of a compressed message.
    let mut bytes = rsv1_frame(false, 1, &HELLO[..3], M);
    bytes.extend(rsv1_frame(true, 0, &HELLO[3..], M));
    assert_eq!(code(run_d(&bytes)), 1002);
    // Continuation of an uncompressed message.
    let mut bytes = client_frame(false, 1, b"Hel", M);
    bytes.extend(rsv1_frame(true, 0, &HELLO, M));
    assert_eq!(code(run_d(&bytes)), 1002);
}

#[test]
fn rsv2_and_rsv3_stay_1002_with_the_extension() {
    for bit in [0x20, 0x10] {
        let mut f = rsv1_frame(true, 1, &HELLO, M);
        f[0] |= bit;
        assert_eq!(code(run_d(&f)), 1002);
        let mut f = client_frame(true, 1, b"x", M);
        f[0] |= bit;
        assert_eq!(code(run_d(&f)), 1002);
    }
}

#[test]
fn a_ping_between_compressed_fragments_is_answered_in_order() {
    let mut bytes = rsv1_frame(false, 1, &HELLO[..2], M);
    bytes.extend(client_frame(true, 9, b"p", M));
    bytes.extend(client_frame(true, 0, &HELLO[2..], M));
    assert_eq!(run_d(&bytes).0, vec![Owned::Ping(b"p".to_vec()), Owned::Text(b"Hello".to_vec())]);
}

#[test]
fn zip_bomb_is_1009_whole_or_fragmented() {
    let limits = Limits { max_frame: 64 * 1024, max_message: 64 * 1024 };
    let bomb = Deflater::new().compress_payload(&vec![b'a'; 8 << 20]).to_vec();
    assert!(bomb.len() < 16 * 1024);
    assert_eq!(code(run_deflate(&rsv1_frame(true, 1, &bomb, M), &[], &limits)), 1009);
    let mut bytes = rsv1_frame(false, 2, &bomb[..100], M);
    bytes.extend(client_frame(true, 0, &bomb[100..], M));
    assert_eq!(code(run_deflate(&bytes, &[3, 50, 200], &limits)), 1009);
}

#[test]
fn the_limit_is_on_the_inflated_size() {
    let limits = Limits { max_frame: 1000, max_message: 1000 };
    let exact = Deflater::new().compress_payload(&[b'x'; 1000]).to_vec();
    let over = Deflater::new().compress_payload(&[b'x'; 1001]).to_vec();
    assert!(exact.len() < 20);
    let (ev, r) = run_deflate(&rsv1_frame(true, 1, &exact, M), &[], &limits);
    assert_eq!((ev, r), (vec![Owned::Text(vec![b'x'; 1000])], Ok(Status::Open)));
    assert_eq!(code(run_deflate(&rsv1_frame(true, 1, &over, M), &[], &limits)), 1009);
}

#[test]
fn incompressible_data_may_exceed_the_limits_on_the_wire() {
    // 1000 random bytes compress to slightly more than 1000: still one 1000-byte message.
    let limits = Limits { max_frame: 1000, max_message: 1000 };
    let noise = crate::protocol::deflate::noise(1000, 11);
    let wire = Deflater::new().compress_payload(&noise).to_vec();
    assert!(wire.len() > 1000 && wire.len() <= compressed_bound(1000));
    assert_eq!(run_deflate(&rsv1_frame(true, 2, &wire, M), &[], &limits).0, vec![Owned::Binary(noise)]);
    // Beyond the bound the frame is refused from its header alone.
    let header_only = &rsv1_frame(true, 2, &vec![0; compressed_bound(1000) + 1], M)[..8];
    assert_eq!(code(run_deflate(header_only, &[], &limits)), 1009);
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    let bad = Deflater::new().compress_payload(b"ab\xc0\xafcd").to_vec();
    assert_eq!(code(run_d(&rsv1_frame(true, 1, &bad, M))), 1007);
    // Split across fragments: valid only as a whole.
    let good = Deflater::new().compress_payload("κόσμε".as_bytes()).to_vec();
    let mut bytes = rsv1_frame(false, 1, &good[..1], M);
    bytes.extend(client_frame(true, 0, &good[1..], M));
    assert_eq!(run_d(&bytes).0, text("κόσμε"));
    // Binary messages are not validated.
    assert_eq!(run_d(&rsv1_frame(true, 2, &bad, M)).0, vec![Owned::Binary(b"ab\xc0\xafcd".to_vec())]);
}

#[test]
fn corrupt_deflate_data_is_1007() {
    assert_eq!(code(run_d(&rsv1_frame(true, 1, &[0x07, 0x00], M))), 1007);
    // A back-reference to the previous message: no context takeover.
    let mut bytes = rsv1_frame(true, 1, &HELLO, M);
    bytes.extend(rsv1_frame(true, 1, &[0xf2, 0x00, 0x11, 0x00, 0x00], M));
    let (ev, r) = run_d(&bytes);
    assert_eq!(ev, text("Hello"));
    assert_eq!(r.unwrap_err().close_code(), 1007);
}

#[test]
fn connection_between_compressed_messages_keeps_no_state() {
    let mut inflater = Inflater::new();
    let mut state = None;
    let mut whole = rsv1_frame(true, 1, &HELLO, M);
    decode_with(&mut state, &mut whole, &Limits::default(), Some(&mut inflater), |_| {}).unwrap();
    assert!(state.is_none());
    let mut bytes = rsv1_frame(false, 1, &HELLO[..3], M);
    bytes.extend(client_frame(true, 0, &HELLO[3..], M));
    let (a, b) = bytes.split_at_mut(5);
    decode_with(&mut state, a, &Limits::default(), Some(&mut inflater), |_| {}).unwrap();
    assert!(state.is_some(), "mid-message state exists");
    decode_with(&mut state, b, &Limits::default(), Some(&mut inflater), |_| {}).unwrap();
    assert!(state.is_none());
}

/// A message as a client sends it: compressed by `Deflater` (same wire format as any
/// RFC 7692 sender), cut into `pieces` fragments, RSV1 on the first only.
fn client_message(d: &mut Deflater, opcode: u8, payload: &[u8], pieces: usize, mask: [u8; 4]) -> Vec<u8> {
    let op = if opcode == 1 { Opcode::Text } else { Opcode::Binary };
    let frame = d.frame(op, payload).frame;
    let wire = payload_of(&frame);
    let step = wire.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<&[u8]> = if wire.is_empty() { vec![&[][..]] } else { wire.chunks(step).collect() };
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let fin = i + 1 == chunks.len();
        if i == 0 {
            out.extend(rsv1_frame(fin, opcode, c, mask));
        } else {
            out.extend(client_frame(fin, 0, c, mask));
        }
    }
    out
}

#[test]
fn every_split_of_a_mixed_compressed_stream_gives_the_same_result() {
    let mut d = Deflater::new();
    let json = br#"{"event":"client-typing","channel":"private-chat","data":{"user":"42","text":"hello hello hello"}}"#;
    let mut bytes = client_message(&mut d, 1, json, 1, M);
    bytes.extend(client_message(&mut d, 2, &[7u8; 3000], 3, M));
    bytes.extend(client_frame(true, 9, b"ping", M));
    bytes.extend(client_message(&mut d, 1, "κόσμε ".repeat(50).as_bytes(), 4, M));
    bytes.extend(client_frame(true, 1, b"plain", M));
    bytes.extend(client_frame(true, 8, b"\x03\xe8", M));
    let limits = Limits::default();
    let whole = run_deflate(&bytes, &[], &limits);
    assert_eq!(whole.0.len(), 6);
    assert_eq!(whole.1, Ok(Status::Closed));
    for cut in 0..=bytes.len() {
        assert_eq!(run_deflate(&bytes, &[cut], &limits), whole, "cut at {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn deflater_and_inflater_round_trip(
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..5000),
            "[a-z{}\":, ]{0,3000}".prop_map(String::into_bytes),
        ],
        level in 1u8..=9,
    ) {
        let mut d = Deflater::with_level(level);
        let wire = d.compress_payload(&payload).to_vec();
        let mut inf = Inflater::new();
        prop_assert_eq!(inf.inflate(&wire, payload.len()).unwrap(), &payload[..]);
        if !payload.is_empty() {
            prop_assert_eq!(inf.inflate(&wire, payload.len() - 1), Err(crate::protocol::deflate::InflateError::TooBig));
        }
    }

    #[test]
    fn compressed_messages_decode_the_same_at_any_split(
        messages in proptest::collection::vec(
            (prop_oneof![
                "[a-zé€😀 {}:,\"]{0,400}".prop_map(|s| (1u8, s.into_bytes())),
                proptest::collection::vec(any::<u8>(), 0..600).prop_map(|b| (2u8, b)),
            ], 1usize..4, any::<bool>(), any::<[u8; 4]>()),
            1..5,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut d = Deflater::new();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for ((opcode, payload), pieces, compress, mask) in &messages {
            if *compress {
                bytes.extend(client_message(&mut d, *opcode, payload, *pieces, *mask));
            } else {
                bytes.extend(client_frame(true, *opcode, payload, *mask));
            }
            expected.push(if *opcode == 1 { Owned::Text(payload.clone()) } else { Owned::Binary(payload.clone()) });
        }
        let limits = Limits::default();
        let whole = run_deflate(&bytes, &[], &limits);
        prop_assert_eq!(&whole, &(expected, Ok(Status::Open)));
        prop_assert_eq!(run_deflate(&bytes, &cuts, &limits), whole);
    }
}
