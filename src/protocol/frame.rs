//! Server-side frame encoding and client-frame unmasking (RFC 6455 §5.2, §5.3).
//!
//! Header parsing is tungstenite's `FrameHeader`; this file adds what tungstenite keeps private:
//! masking with an offset (a frame's payload may arrive across several reads) and encoding a
//! complete server frame into one `Bytes` that can be shared by every recipient of a broadcast.

use bytes::{BufMut, Bytes, BytesMut};

/// WebSocket opcodes used by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// A continuation frame.
    Continuation = 0x0,
    /// A text frame.
    Text = 0x1,
    /// A binary frame.
    Binary = 0x2,
    /// A close frame.
    Close = 0x8,
    /// A ping.
    Ping = 0x9,
    /// A pong.
    Pong = 0xA,
}

/// Largest header of an unmasked server frame: 2 bytes + 8 bytes of extended length.
pub const MAX_SERVER_HEADER: usize = 10;

/// Bytes the header of an unmasked server frame with `len` payload bytes takes.
pub const fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    }
}

/// Appends the header of a final, unmasked server frame.
pub fn put_header(out: &mut impl BufMut, opcode: Opcode, len: usize) {
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Encodes a complete final server frame (header + payload) into one buffer.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// The payload of a complete unmasked server frame made by `encode`.
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let len7 = frame.get(1).map_or(0, |b| b & 0x7f);
    let start = match len7 {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.get(start..).unwrap_or(&[])
}

/// Encodes a close frame carrying `code` and a (≤ 123 byte) UTF-8 reason.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let reason = truncate_utf8(reason, 123);
    let mut out = BytesMut::with_capacity(4 + reason.len());
    put_header(&mut out, Opcode::Close, 2 + reason.len());
    out.put_u16(code);
    out.put_slice(reason.as_bytes());
    out.freeze()
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Encodes a masked client frame (what clients send; used by tests, benchmarks and the load
/// harness).
pub fn encode_client(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

/// XORs `buf` with `mask`, where `buf` starts `offset` bytes into the frame's payload.
/// Returns the offset after `buf`, for the next chunk of the same payload.
pub fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) -> usize {
    let phase = offset & 3;
    let rotated = u32::from_ne_bytes(mask).rotate_right(8 * phase as u32);
    let rotated = if cfg!(target_endian = "big") {
        u32::from_ne_bytes(mask).rotate_left(8 * phase as u32)
    } else {
        rotated
    };
    let key = rotated.to_ne_bytes();
    let mut chunks = buf.chunks_exact_mut(8);
    let key8 = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8")) ^ key8;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
    offset + buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) & 3];
        }
    }

    #[test]
    fn unmask_matches_bytewise_xor_at_every_offset_and_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for offset in 0..8 {
            for len in 0..40 {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                assert_eq!(unmask(&mut fast, mask, offset), offset + len);
                naive(&mut slow, mask, offset);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn unmask_in_pieces_equals_unmask_whole() {
        let mask = [1, 2, 3, 250];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        for split in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            let off = unmask(a, mask, 0);
            unmask(b, mask, off);
            assert_eq!(parts, whole);
        }
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(&encode(Opcode::Text, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode(Opcode::Binary, &[0u8; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        let f = encode(Opcode::Binary, &vec![0u8; 65536]);
        assert_eq!(&f[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(f.len(), 65546);
        assert_eq!(header_len(125), 2);
        assert_eq!(header_len(65535), 4);
    }

    #[test]
    fn payload_of_strips_every_header_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'x'; len];
            assert_eq!(payload_of(&encode(Opcode::Text, &payload)), &payload[..]);
        }
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let f = encode_close(1000, &reason);
        assert!(f.len() <= 2 + 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        assert_eq!(&f[2..4], &1000u16.to_be_bytes());
    }
}
