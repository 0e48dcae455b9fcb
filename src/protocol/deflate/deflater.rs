//! Compression of one outgoing message into a complete permessage-deflate frame (RFC 7692
//! §7.2.1), without context takeover. One `Deflater` per core; each frame it makes is a
//! `Bytes` that every subscriber that negotiated the extension shares.

use bytes::{BufMut, Bytes, BytesMut};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush};

use super::inflater::TAIL;
use crate::protocol::frame::{Opcode, header_len};

/// The zlib level used by [`Deflater::new`]. A message is compressed once for all its
/// recipients, so bytes saved count more than CPU: level 6 makes a 9 KB event 11 % smaller
/// than level 2 does, for about twice the time (`cargo bench --bench micro -- deflate`).
pub const DEFAULT_LEVEL: u8 = 6;

/// Payloads shorter than this are not worth compressing: DEFLATE's block overhead eats
/// whatever a few short matches save.
pub const MIN_WORTHWHILE: usize = 48;

/// A complete final server frame with RSV1 set, and the window its back-references need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedFrame {
    /// The frame, shareable by every recipient.
    pub frame: Bytes,
    /// log2 of the LZ77 window a client needs to inflate it (8..=15); send the frame only to
    /// connections whose [`super::Negotiated::accepts`] says yes.
    pub window_bits: u8,
}

/// Per-core compressor: zlib-rs with a 32 KiB window, reset before every message (no context
/// takeover). Holds 371 KiB of zlib state plus an output scratch as large as the largest
/// message compressed.
///
/// Cost: every message pays a reset (zlib-rs clears a 128 KiB hash table, ~4 µs) plus the
/// compression itself, so a 100-byte event costs ~9 µs and a 9 KB one ~60 µs. Once per
/// broadcast that is negligible; for small messages sent to one connection a caller may
/// prefer to send them plain.
pub struct Deflater {
    z: Deflate,
    /// Output scratch; always initialized, `len()` is its usable size.
    scratch: Vec<u8>,
    /// A level-0 compressor (stored blocks, no back-references: fits any window), made on first
    /// use by `frame_within`.
    stored: Option<Box<Deflater>>,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").field("scratch", &self.scratch.len()).finish()
    }
}

impl Deflater {
    /// A compressor at [`DEFAULT_LEVEL`].
    pub fn new() -> Self {
        Self::with_level(DEFAULT_LEVEL)
    }

    /// A compressor at zlib `level` (0 stored blocks only, 1 fastest … 9 smallest; clamped to
    /// that range).
    pub fn with_level(level: u8) -> Self {
        let config =
            DeflateConfig { level: i32::from(level.min(9)), window_bits: -15, ..DeflateConfig::default() };
        Deflater { z: Deflate::new_with_config(config), scratch: Vec::new(), stored: None }
    }

    /// Encodes `payload` as one compressed frame that a client whose LZ77 window is
    /// `max_window_bits` can inflate: compressed normally when the message fits that window,
    /// else as stored blocks (RSV1 set, DEFLATE without back-references, a few bytes larger than
    /// the payload). For a connection that should get every message compressed (the echo
    /// endpoint mirrors a compressing client).
    pub fn frame_within(&mut self, opcode: Opcode, payload: &[u8], max_window_bits: u8) -> CompressedFrame {
        if window_bits_for(payload.len()) <= max_window_bits {
            return self.frame(opcode, payload);
        }
        let stored = self.stored.get_or_insert_with(|| Box::new(Deflater::with_level(0)));
        let compressed = stored.compress_payload(payload);
        CompressedFrame { frame: encode_rsv1(opcode, compressed), window_bits: 8 }
    }

    /// Compresses one message payload on its own and returns it as sent on the wire: the
    /// DEFLATE data flushed to a byte boundary with its trailing `00 00 ff ff` removed
    /// (RFC 7692 §7.2.1). An empty payload becomes the single byte `00` (§7.2.3.6).
    pub fn compress_payload(&mut self, payload: &[u8]) -> &[u8] {
        self.z.reset();
        let mut filled = 0;
        let mut input = payload;
        loop {
            if self.scratch.len() - filled < 64 {
                let want = (filled + payload.len() / 2 + 1024).max(self.scratch.len() * 2);
                self.scratch.resize(want, 0);
            }
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            self.z
                .compress(input, &mut self.scratch[filled..], DeflateFlush::SyncFlush)
                .expect("a deflate stream that was just reset takes any input");
            input = &input[(self.z.total_in() - in0) as usize..];
            filled += (self.z.total_out() - out0) as usize;
            // The flush is complete once all input is taken and output room is left over.
            if input.is_empty() && filled < self.scratch.len() {
                break;
            }
        }
        debug_assert!(
            self.scratch[..filled].ends_with(&TAIL),
            "a sync flush ends with an empty stored block"
        );
        &self.scratch[..filled.saturating_sub(TAIL.len())]
    }

    /// Encodes `payload` as one compressed final frame, however large the result.
    pub fn frame(&mut self, opcode: Opcode, payload: &[u8]) -> CompressedFrame {
        let window_bits = window_bits_for(payload.len());
        let compressed = self.compress_payload(payload);
        CompressedFrame { frame: encode_rsv1(opcode, compressed), window_bits }
    }

    /// Encodes `payload` as a compressed frame only when that is shorter than the plain frame;
    /// `None` means: send the uncompressed frame to everyone.
    pub fn frame_if_smaller(&mut self, opcode: Opcode, payload: &[u8]) -> Option<CompressedFrame> {
        if payload.len() < MIN_WORTHWHILE {
            return None;
        }
        let window_bits = window_bits_for(payload.len());
        let compressed = self.compress_payload(payload);
        let plain_len = header_len(payload.len()) + payload.len();
        if header_len(compressed.len()) + compressed.len() >= plain_len {
            return None;
        }
        Some(CompressedFrame { frame: encode_rsv1(opcode, compressed), window_bits })
    }
}

/// The smallest window (log2 bytes, 8..=15) that holds every back-reference of a message of
/// `len` bytes compressed on its own: no reference reaches before the message's start.
pub fn window_bits_for(len: usize) -> u8 {
    let mut bits = 8;
    while bits < 15 && (1usize << bits) < len {
        bits += 1;
    }
    bits
}

/// A final server frame with RSV1 ("Per-Message Compressed", RFC 7692 §6) set.
fn encode_rsv1(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    crate::protocol::frame::put_header(&mut out, opcode, payload.len());
    out[0] |= 0x40;
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::super::Inflater;
    use super::*;
    use crate::protocol::frame::payload_of;

    #[test]
    fn hello_compresses_as_in_rfc_7692() {
        // §7.2.3.1: "Hello" in one compressed block, the form zlib's fixed-Huffman output takes.
        let mut d = Deflater::new();
        let f = d.frame(Opcode::Text, b"Hello");
        assert_eq!(&f.frame[..], &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(f.window_bits, 8);
    }

    #[test]
    fn messages_beyond_a_small_window_go_as_stored_blocks() {
        let mut d = Deflater::new();
        let mut inf = Inflater::new();
        let text = b"abcabcabc".repeat(100);
        let f = d.frame_within(Opcode::Text, &text, 8);
        assert_eq!(f.frame[0], 0xc1, "RSV1 set");
        assert_eq!(f.window_bits, 8, "no back-references at all");
        let payload = payload_of(&f.frame);
        assert!(payload.len() > text.len(), "stored, not compressed");
        assert_eq!(inf.inflate(payload, 1 << 20).unwrap(), &text[..]);
        // Within the window: compressed normally.
        let small = d.frame_within(Opcode::Text, &text[..200], 8);
        assert!(payload_of(&small.frame).len() < 200);
    }

    #[test]
    fn empty_payload_is_one_zero_byte() {
        let mut d = Deflater::new();
        assert_eq!(d.compress_payload(b""), &[0x00]);
        assert_eq!(&d.frame(Opcode::Binary, b"").frame[..], &[0xc2, 0x01, 0x00]);
        assert_eq!(Inflater::new().inflate(&[0x00], 10).unwrap(), b"");
    }

    #[test]
    fn each_message_is_compressed_on_its_own() {
        let mut d = Deflater::new();
        let first = d.compress_payload(b"Hello").to_vec();
        // The same bytes again: with context takeover the second would be a back-reference.
        assert_eq!(d.compress_payload(b"Hello"), &first[..]);
    }

    #[test]
    fn frames_use_the_shortest_length_form_and_inflate_back() {
        let mut d = Deflater::new();
        let mut inf = Inflater::new();
        let text: Vec<u8> =
            (0..200_000u32).map(|i| b"abcdefghij"[(i.wrapping_mul(i) % 7) as usize]).collect();
        for len in [0usize, 1, 125, 126, 300, 70_000, 200_000] {
            let f = d.frame(Opcode::Text, &text[..len]);
            assert_eq!(f.frame[0], 0xc1);
            let payload = payload_of(&f.frame);
            assert_eq!(f.frame.len(), header_len(payload.len()) + payload.len());
            assert_eq!(inf.inflate(payload, 1 << 20).unwrap(), &text[..len]);
        }
    }

    #[test]
    fn incompressible_or_tiny_payloads_stay_plain() {
        let mut d = Deflater::new();
        assert_eq!(d.frame_if_smaller(Opcode::Text, br#"{"event":"pusher:pong","data":{}}"#), None);
        assert_eq!(d.frame_if_smaller(Opcode::Binary, &super::super::noise(4096, 7)), None);
        let json = br#"{"event":"message","channel":"chat","data":"{\"text\":\"hello hello hello hello\",\"user\":\"42\"}"}"#;
        let f = d.frame_if_smaller(Opcode::Text, json).unwrap();
        assert!(f.frame.len() < json.len() + 2);
    }

    #[test]
    fn window_bits_cover_the_message_length() {
        assert_eq!(window_bits_for(0), 8);
        assert_eq!(window_bits_for(256), 8);
        assert_eq!(window_bits_for(257), 9);
        assert_eq!(window_bits_for(1024), 10);
        assert_eq!(window_bits_for(32_768), 15);
        assert_eq!(window_bits_for(10 << 20), 15);
    }

    #[test]
    fn a_message_compressed_on_its_own_inflates_without_any_earlier_window() {
        // Why `window_bits_for(len)` is enough: every back-reference of a frame points inside
        // its own message (a fresh inflater refuses anything else, see the inflater's tests),
        // so no distance exceeds len - 1. Here the repeat refers 600 bytes back.
        let block = super::super::noise(600, 3);
        let text = [block.clone(), block].concat();
        let f = Deflater::new().frame(Opcode::Binary, &text);
        assert!(payload_of(&f.frame).len() < 700, "the repeat was found");
        assert_eq!(f.window_bits, 11);
        assert_eq!(Inflater::new().inflate(payload_of(&f.frame), 1200).unwrap(), &text[..]);
    }
}
