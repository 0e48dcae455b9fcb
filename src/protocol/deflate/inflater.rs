//! Decompression of one permessage-deflate message (RFC 7692 §7.2.2), with a hard limit on
//! the inflated size. One `Inflater` per core serves every connection: with
//! `client_no_context_takeover` nothing carries over from one message to the next.

use zlib_rs::{Inflate, InflateFlush, Status};

/// Appended to a message's payload before inflating (RFC 7692 §7.2.2): completes the empty
/// stored block whose first four bytes the sender removed.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window: 32 KiB, enough for every window size a peer may use.
const WINDOW: usize = 1 << 15;

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (close 1009). Inflating stops at the limit, so a
    /// zip bomb costs at most `limit + 1` bytes of output.
    TooBig,
    /// Not valid DEFLATE data (close 1007).
    Corrupt,
}

/// Per-core inflate state and output scratch. Holds 46 KiB (zlib state and a 32 KiB window)
/// plus the largest message inflated so far (at most the message limit + 1).
pub struct Inflater {
    z: Inflate,
    /// Output scratch; always initialized, `len()` is its usable size.
    out: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("scratch", &self.out.len()).finish()
    }
}

impl Inflater {
    /// A per-core inflater (raw DEFLATE, 32 KiB window).
    pub fn new() -> Self {
        Inflater { z: Inflate::new(false, 15), out: Vec::new() }
    }

    /// Bytes of output scratch held (the zlib state is not counted).
    pub fn scratch_bytes(&self) -> usize {
        self.out.capacity()
    }

    /// Inflates the payload of one whole compressed message, as received (without the tail),
    /// into the scratch, and returns it. `limit` is the largest inflated size accepted.
    ///
    /// Blocks with BFINAL set may appear anywhere; the next block follows the padding
    /// (RFC 7692 §7.2.1, §7.2.3.4) and may refer back across it. Data that ends inside a block
    /// yields what was inflated so far, as zlib-based peers do; an empty payload is the empty
    /// message.
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<&[u8], InflateError> {
        self.z.reset(false);
        let cap = limit.saturating_add(1);
        let mut filled = 0;
        for chunk in [payload, &TAIL[..]] {
            let mut input = chunk;
            loop {
                if filled == self.out.len() {
                    if filled >= cap {
                        return Err(InflateError::TooBig);
                    }
                    let want =
                        filled.saturating_mul(2).max(payload.len().saturating_mul(4)).max(1024).min(cap);
                    self.out.reserve_exact(want - filled);
                    self.out.resize(want, 0);
                }
                let (in0, out0) = (self.z.total_in(), self.z.total_out());
                let status = self
                    .z
                    .decompress(input, &mut self.out[filled..], InflateFlush::NoFlush)
                    .map_err(|_| InflateError::Corrupt)?;
                let used = (self.z.total_in() - in0) as usize;
                let made = (self.z.total_out() - out0) as usize;
                input = &input[used..];
                filled += made;
                if status == Status::StreamEnd {
                    // A block with BFINAL ended the DEFLATE stream; what follows is a new one
                    // that may refer back into this message.
                    self.z.reset(false);
                    let window = &self.out[filled.saturating_sub(WINDOW)..filled];
                    self.z.set_dictionary(window).map_err(|_| InflateError::Corrupt)?;
                    if input.is_empty() {
                        break;
                    }
                    continue;
                }
                if input.is_empty() && filled < self.out.len() {
                    break;
                }
                if used == 0 && made == 0 {
                    if input.is_empty() {
                        break;
                    }
                    // Input and room, yet no progress: the stream cannot go on.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        if filled > limit {
            return Err(InflateError::TooBig);
        }
        Ok(&self.out[..filled])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        Inflater::new().inflate(payload, 1 << 20).map(<[u8]>::to_vec)
    }

    // RFC 7692 §7.2.3.1.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc_7692_examples() {
        assert_eq!(inflate(&HELLO).unwrap(), b"Hello");
        // §7.2.3.3: a block with no compression.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]).unwrap(),
            b"Hello"
        );
        // §7.2.3.4: a block with BFINAL set, then the header bits of an empty stored block.
        assert_eq!(inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]).unwrap(), b"Hello");
        // §7.2.3.5: two DEFLATE blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&two).unwrap(), b"Hello");
        // §7.2.3.6: an empty message is a lone empty-block header.
        assert_eq!(inflate(&[0x00]).unwrap(), b"");
    }

    #[test]
    fn blocks_after_a_final_block_belong_to_the_message() {
        // "Hello" with BFINAL set (byte-aligned), then "World" as a new stream.
        let wire = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x0a, 0xcf, 0x2f, 0xca, 0x49, 0x01, 0x00];
        assert_eq!(inflate(&wire).unwrap(), b"HelloWorld");
    }

    #[test]
    fn the_window_survives_a_final_block_within_a_message() {
        // RFC 7692 §7.2.3.2's second "Hello" refers 5 bytes back; here it follows a final block.
        let mut wire = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        wire.extend([0xf2, 0x00, 0x11, 0x00, 0x00]);
        assert_eq!(inflate(&wire).unwrap(), b"HelloHello");
    }

    #[test]
    fn nothing_carries_over_between_messages() {
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&HELLO, 100).unwrap(), b"Hello");
        // §7.2.3.2's second message refers to the first: without context takeover it must not
        // inflate to "Hello" again.
        assert_eq!(inf.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100), Err(InflateError::Corrupt));
        assert_eq!(inf.inflate(&HELLO, 100).unwrap(), b"Hello");
    }

    #[test]
    fn empty_payload_is_the_empty_message() {
        assert_eq!(inflate(&[]).unwrap(), b"");
        // What some senders (PHP's zlib functions) make of an empty message: one empty final
        // fixed-Huffman block, no 0x00 octet after it.
        assert_eq!(inflate(&[0x03, 0x00]).unwrap(), b"");
        // "Hello" ending in a final block without the 0x00 octet of §7.2.3.4.
        assert_eq!(inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(), b"Hello");
    }

    #[test]
    fn limit_is_on_the_inflated_size() {
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&HELLO, 5).unwrap(), b"Hello");
        assert_eq!(inf.inflate(&HELLO, 4), Err(InflateError::TooBig));
        assert_eq!(inf.inflate(&HELLO, 0), Err(InflateError::TooBig));
        assert_eq!(inf.inflate(&HELLO, 5).unwrap(), b"Hello", "usable after a refusal");
    }

    #[test]
    fn zip_bomb_stops_at_the_limit() {
        // 10 MiB of zeros compress to about 10 KiB.
        let bomb = super::super::Deflater::new().compress_payload(&vec![0u8; 10 << 20]).to_vec();
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        assert!(inf.scratch_bytes() <= 64 * 1024 + 1, "scratch {}", inf.scratch_bytes());
    }

    #[test]
    fn corrupt_data_is_refused() {
        // BTYPE 11 is reserved.
        assert_eq!(inflate(&[0x07]), Err(InflateError::Corrupt));
        // A distance before the start of the message.
        assert_eq!(inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00]), Err(InflateError::Corrupt));
        // Stored block whose LEN and NLEN disagree.
        assert_eq!(inflate(&[0x00, 0x05, 0x00, 0x00, 0x00]), Err(InflateError::Corrupt));
    }
}
