//! Server-to-client WebSocket frames scanned in place, and the probe every published event
//! carries: no allocation and no copy per frame.
//!
//! The probe is 31 ASCII bytes anywhere in a message: `~`, the publish time (ns since the epoch,
//! 16 hex digits), the channel index (4 hex), the publisher index (2 hex) and that publisher's
//! sequence number on that channel (8 hex, from 1). `~` never occurs in the JSON a Pusher server
//! wraps around `data`, nor in the padding, so the first `~` starts the probe.

/// The probe's first byte.
pub const MARK: u8 = b'~';
/// Bytes of a probe.
pub const PROBE_LEN: usize = 31;
/// Largest frame the harness accepts from a server (larger: the connection is dropped as a
/// protocol error; fan-out events are far smaller).
pub const MAX_FRAME: usize = 128 * 1024;

/// What a probe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sent_ns: u64,
    pub channel: u16,
    pub publisher: u8,
    pub seq: u32,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Writes `p` into `out[..PROBE_LEN]`.
pub fn write_probe(out: &mut [u8], p: &Probe) {
    out[0] = MARK;
    put_hex(&mut out[1..17], p.sent_ns);
    put_hex(&mut out[17..21], u64::from(p.channel));
    put_hex(&mut out[21..23], u64::from(p.publisher));
    put_hex(&mut out[23..31], u64::from(p.seq));
}

/// A probe padded with `x` to `size` bytes (at least the probe).
pub fn probe_text(p: &Probe, size: usize) -> Vec<u8> {
    let mut v = vec![b'x'; size.max(PROBE_LEN)];
    write_probe(&mut v, p);
    v
}

/// Value of a hex digit, or 0xff.
const UNHEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn hex(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &c in b {
        let d = UNHEX[c as usize];
        bad |= d;
        v = (v << 4) | u64::from(d & 0xf);
    }
    // Every valid digit is < 16, so only an invalid one sets bit 4 or above.
    (bad & 0xf0 == 0).then_some(v)
}

/// Finds and decodes the probe in a message, if it has one.
pub fn find_probe(msg: &[u8]) -> Option<Probe> {
    let at = memchr::memchr(MARK, msg)?;
    let p = msg.get(at..at + PROBE_LEN)?;
    Some(Probe {
        sent_ns: hex(&p[1..17])?,
        channel: hex(&p[17..21])? as u16,
        publisher: hex(&p[21..23])? as u8,
        seq: hex(&p[23..31])? as u32,
    })
}

/// Why a server's byte stream cannot be read as frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// A server frame with the mask bit set (RFC 6455 5.1 forbids it).
    Masked,
    /// A frame longer than `MAX_FRAME`.
    TooLong,
}

/// Calls `f(opcode, compressed, payload)` (compressed: RSV1, permessage-deflate) for every
/// complete frame at the start of `buf` and returns
/// how many bytes they took; the rest is an incomplete frame.
#[inline]
pub fn scan(buf: &[u8], mut f: impl FnMut(u8, bool, &[u8])) -> Result<usize, ScanError> {
    let mut pos = 0usize;
    let end = buf.len();
    while end - pos >= 2 {
        let b0 = buf[pos];
        let b1 = buf[pos + 1];
        if b1 & 0x80 != 0 {
            return Err(ScanError::Masked);
        }
        let (head, len) = match b1 & 0x7f {
            126 => {
                if end - pos < 4 {
                    break;
                }
                (4, usize::from(u16::from_be_bytes([buf[pos + 2], buf[pos + 3]])))
            }
            127 => {
                if end - pos < 10 {
                    break;
                }
                let mut l = [0u8; 8];
                l.copy_from_slice(&buf[pos + 2..pos + 10]);
                let l = u64::from_be_bytes(l);
                if l > MAX_FRAME as u64 {
                    return Err(ScanError::TooLong);
                }
                (10, l as usize)
            }
            l => (2, usize::from(l)),
        };
        if len > MAX_FRAME {
            return Err(ScanError::TooLong);
        }
        if end - pos < head + len {
            break;
        }
        let start = pos + head;
        f(b0 & 0x0f, b0 & 0x40 != 0, &buf[start..start + len]);
        pos = start + len;
    }
    Ok(pos)
}

/// An unmasked server frame (what a server sends), for self-tests.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_inside_a_pusher_event() {
        let p = Probe { sent_ns: 1_764_000_000_123_456_789, channel: 99, publisher: 3, seq: 4_000_000_000 };
        let data = String::from_utf8(probe_text(&p, 100)).unwrap();
        assert_eq!(data.len(), 100);
        let event = serde_json::json!({"event": "bench", "channel": "fanout-99", "data": data}).to_string();
        assert_eq!(find_probe(event.as_bytes()), Some(p));
    }

    #[test]
    fn no_probe_in_protocol_messages_or_a_truncated_one() {
        assert_eq!(find_probe(br#"{"event":"pusher:ping","data":{}}"#), None);
        let p = Probe { sent_ns: 1, channel: 0, publisher: 0, seq: 1 };
        let text = probe_text(&p, 31);
        assert_eq!(find_probe(&text[..30]), None);
        let mut bad = text.clone();
        bad[5] = b'g';
        assert_eq!(find_probe(&bad), None);
    }

    #[test]
    fn scan_takes_whole_frames_and_leaves_the_partial_one() {
        let small = server_frame(1, b"hello");
        let mid = server_frame(2, &[7u8; 300]);
        let big = server_frame(1, &vec![b'a'; 70_000]);
        let mut stream = Vec::new();
        stream.extend_from_slice(&small);
        stream.extend_from_slice(&mid);
        stream.extend_from_slice(&big);
        // Every split point: the frames before it are taken, the rest is left.
        for cut in
            [0, 1, small.len(), small.len() + 3, small.len() + mid.len() + 9, stream.len() - 1, stream.len()]
        {
            let mut seen = Vec::new();
            let used = scan(&stream[..cut], |op, rsv1, p| seen.push((op, rsv1, p.len()))).unwrap();
            let whole: Vec<(u8, bool, usize)> =
                [(1, false, 5), (2, false, 300), (1, false, 70_000)].into_iter().take(seen.len()).collect();
            assert_eq!(seen, whole);
            let want = [0, small.len(), small.len() + mid.len(), stream.len()][seen.len()];
            assert_eq!(used, want, "cut {cut}");
        }
    }

    #[test]
    fn scan_refuses_masked_and_oversized_frames() {
        assert_eq!(scan(&[0x81, 0x85, 1, 2, 3, 4, 0], |_, _, _| {}), Err(ScanError::Masked));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert_eq!(scan(&huge, |_, _, _| {}), Err(ScanError::TooLong));
    }
}
