use super::*;
use crate::protocol::deflate::Inflater;
use proptest::prelude::*;

/// A masked client frame.
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    crate::protocol::frame::encode_client(fin, opcode, payload, mask)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

type Outcome = (Vec<Owned>, Result<Status, Failure>);

fn record(events: &mut Vec<Owned>) -> impl FnMut(Event<'_>) + '_ {
    move |e| {
        events.push(match e {
            Event::Text(t) => Owned::Text(t.to_vec()),
            Event::Binary(b) => Owned::Binary(b.to_vec()),
            Event::Ping(b) => Owned::Ping(b.to_vec()),
            Event::Pong(b) => Owned::Pong(b.to_vec()),
            Event::Close(c) => Owned::Close(c),
        })
    }
}

/// Feeds `bytes` in the given pieces; stops at the first failure or close, like a connection.
fn run_split(bytes: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    run_split_with(bytes, cuts, limits, None)
}

/// `run_split` on a connection that negotiated permessage-deflate when `inflater` is given.
fn run_split_with(
    bytes: &[u8],
    cuts: &[usize],
    limits: &Limits,
    mut inflater: Option<&mut Inflater>,
) -> Outcome {
    let mut state = None;
    let mut events = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.push(0);
    bounds.push(bytes.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut last = Ok(Status::Open);
    for w in bounds.windows(2) {
        let mut chunk = bytes[w[0]..w[1]].to_vec();
        last = decode_with(&mut state, &mut chunk, limits, inflater.as_deref_mut(), record(&mut events));
        if last != Ok(Status::Open) {
            break;
        }
    }
    (events, last)
}

fn run(bytes: &[u8]) -> Outcome {
    run_split(bytes, &[], &Limits::default())
}

const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[test]
fn single_text_frame() {
    let (ev, r) = run(&client_frame(true, 1, b"Hello", M));
    assert_eq!(ev, vec![Owned::Text(b"Hello".to_vec())]);
    assert_eq!(r, Ok(Status::Open));
}

#[test]
fn idle_connection_keeps_no_state() {
    let mut state = None;
    let mut bytes = client_frame(true, 2, &[1, 2, 3], M);
    decode(&mut state, &mut bytes, &Limits::default(), |_| {}).unwrap();
    assert!(state.is_none());
}

#[test]
fn fragmented_text_with_interleaved_ping() {
    let mut bytes = client_frame(false, 1, b"Hel", M);
    bytes.extend(client_frame(true, 9, b"p", M));
    bytes.extend(client_frame(false, 0, b"l", M));
    bytes.extend(client_frame(true, 0, b"o", M));
    let (ev, r) = run(&bytes);
    assert_eq!(ev, vec![Owned::Ping(b"p".to_vec()), Owned::Text(b"Hello".to_vec())]);
    assert_eq!(r, Ok(Status::Open));
}

#[test]
fn unmasked_frame_is_a_protocol_error() {
    let (_, r) = run(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(r.unwrap_err().close_code(), 1002);
}

#[test]
fn reserved_bits_and_opcodes_are_protocol_errors() {
    let mut f = client_frame(true, 1, b"x", M);
    f[0] |= 0x40;
    assert_eq!(run(&f).1.unwrap_err().close_code(), 1002);
    for op in [3, 7, 0xb, 0xf] {
        assert_eq!(run(&client_frame(true, op, b"", M)).1.unwrap_err().close_code(), 1002);
    }
}

#[test]
fn control_frame_rules() {
    assert_eq!(run(&client_frame(false, 9, b"", M)).1.unwrap_err().close_code(), 1002);
    assert_eq!(run(&client_frame(true, 9, &[0; 126], M)).1.unwrap_err().close_code(), 1002);
    let (ev, _) = run(&client_frame(true, 9, &[7; 125], M));
    assert_eq!(ev, vec![Owned::Ping(vec![7; 125])]);
}

#[test]
fn continuation_rules() {
    assert_eq!(run(&client_frame(true, 0, b"x", M)).1.unwrap_err().close_code(), 1002);
    let mut bytes = client_frame(false, 1, b"a", M);
    bytes.extend(client_frame(true, 1, b"b", M));
    assert_eq!(run(&bytes).1.unwrap_err().close_code(), 1002);
}

#[test]
fn invalid_utf8_fails_fast_within_a_fragmented_message() {
    // The first fragment is already invalid: fail before the message ends.
    let (_, r) = run(&client_frame(false, 1, b"\xce\xba\xf4\x90\x80\x80", M));
    assert_eq!(r.unwrap_err().close_code(), 1007);
    // A valid prefix split inside a character is fine until the end.
    let mut bytes = client_frame(false, 1, b"\xce", M);
    bytes.extend(client_frame(true, 0, b"\xba", M));
    assert_eq!(run(&bytes).0, vec![Owned::Text("κ".as_bytes().to_vec())]);
    // ...but a truncated character at the end of the message is not.
    assert_eq!(run(&client_frame(true, 1, b"\xce", M)).1.unwrap_err().close_code(), 1007);
}

#[test]
fn oversize_frame_and_message_are_1009() {
    let limits = Limits { max_frame: 100, max_message: 150 };
    let big = client_frame(true, 2, &[0; 101], M);
    assert_eq!(run_split(&big, &[], &limits).1.unwrap_err().close_code(), 1009);
    let mut bytes = client_frame(false, 2, &[0; 100], M);
    bytes.extend(client_frame(true, 0, &[0; 51], M));
    assert_eq!(run_split(&bytes, &[], &limits).1.unwrap_err().close_code(), 1009);
    // The limit is checked from the header, before any payload arrives.
    let header_only = &client_frame(true, 2, &[0; 1000], M)[..8];
    assert_eq!(run_split(header_only, &[], &limits).1.unwrap_err().close_code(), 1009);
}

#[test]
fn close_frames() {
    let (ev, r) = run(&client_frame(true, 8, b"\x03\xe8bye", M));
    assert_eq!(ev, vec![Owned::Close(Some(1000))]);
    assert_eq!(r, Ok(Status::Closed));
    assert_eq!(run(&client_frame(true, 8, b"", M)).0, vec![Owned::Close(None)]);
    assert_eq!(run(&client_frame(true, 8, b"\x03", M)).1.unwrap_err().close_code(), 1002);
    assert_eq!(run(&client_frame(true, 8, b"\x03\xed", M)).1.unwrap_err().close_code(), 1002);
    assert_eq!(run(&client_frame(true, 8, b"\x03\xe8\xff", M)).1.unwrap_err().close_code(), 1002);
}

#[test]
fn input_after_close_is_ignored() {
    let mut bytes = client_frame(true, 8, b"", M);
    bytes.extend([0xff, 0xff, 0xff]);
    assert_eq!(run(&bytes), (vec![Owned::Close(None)], Ok(Status::Closed)));
}

#[test]
fn sixty_four_bit_length_with_top_bit_is_rejected() {
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 63).to_be_bytes());
    f.extend_from_slice(&M);
    assert_eq!(run(&f).1.unwrap_err().close_code(), 1002);
}

#[test]
fn every_split_of_a_mixed_stream_gives_the_same_result() {
    let mut bytes = client_frame(true, 1, "héllo wörld".as_bytes(), M);
    bytes.extend(client_frame(false, 2, &[9; 300], M));
    bytes.extend(client_frame(true, 10, b"pong", M));
    bytes.extend(client_frame(true, 0, &[8; 70000 - 300], M));
    bytes.extend(client_frame(true, 8, b"\x03\xe9", M));
    let limits = Limits { max_frame: 1 << 20, max_message: 1 << 20 };
    let whole = run_split(&bytes, &[], &limits);
    assert_eq!(whole.0.len(), 4);
    // Every cut in the headers and small frames, and a stride through the long payload.
    let cuts = (0..400).chain((400..bytes.len() - 20).step_by(997)).chain(bytes.len() - 20..=bytes.len());
    for cut in cuts {
        assert_eq!(run_split(&bytes, &[cut], &limits), whole, "cut at {cut}");
    }
}

/// One frame of a generated sequence: mostly valid, sometimes not.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    let valid_text = "[a-zé€😀 ]{0,40}".prop_map(|s| s.into_bytes());
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    let mask = any::<[u8; 4]>();
    prop_oneof![
        4 => (valid_text, any::<bool>(), mask).prop_map(|(t, fin, m)| client_frame(fin, 1, &t, m)),
        3 => (bytes.clone(), any::<bool>(), mask).prop_map(|(b, fin, m)| client_frame(fin, 2, &b, m)),
        3 => (bytes.clone(), any::<bool>(), mask).prop_map(|(b, fin, m)| client_frame(fin, 0, &b, m)),
        2 => (proptest::collection::vec(any::<u8>(), 0..125), mask).prop_map(|(b, m)| client_frame(true, 9, &b, m)),
        1 => (proptest::collection::vec(any::<u8>(), 0..130), any::<bool>(), mask)
            .prop_map(|(b, fin, m)| client_frame(fin, 10, &b, m)),
        1 => (proptest::collection::vec(any::<u8>(), 0..6), mask).prop_map(|(b, m)| client_frame(true, 8, &b, m)),
        1 => (0u8..16, bytes, mask).prop_map(|(op, b, m)| client_frame(true, op, &b, m)),
        1 => proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn split_input_decodes_like_whole_input(
        frames in proptest::collection::vec(arb_frame(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max_message in 64usize..2048,
    ) {
        let bytes: Vec<u8> = frames.concat();
        let limits = Limits { max_frame: max_message, max_message };
        let whole = run_split(&bytes, &[], &limits);
        let split = run_split(&bytes, &cuts, &limits);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn byte_by_byte_decodes_like_whole_input(frames in proptest::collection::vec(arb_frame(), 1..5)) {
        let bytes: Vec<u8> = frames.concat();
        let limits = Limits::default();
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(run_split(&bytes, &cuts, &limits), run_split(&bytes, &[], &limits));
    }
}

mod deflate;
