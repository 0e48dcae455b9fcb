//! Inflating for the subscribers' receive loop, remembering recent messages.
//!
//! A server that compresses a broadcast once sends the same compressed bytes to every
//! subscriber, so one receive thread sees each distinct message thousands of times. Inflating
//! each copy (a zlib reset and a decode per frame) made the harness, not the server, the limit
//! of a compressed fan-out run on one box. A copy whose compressed bytes equal a remembered
//! message's (compared in full, not by hash) gets that message's inflated text; any other is
//! inflated and remembered. The result is what inflating would give, byte for byte.

use std::collections::HashMap;
use std::hash::BuildHasher;

use corecast::protocol::deflate::Inflater;
use rustc_hash::FxBuildHasher;

/// How many distinct messages are remembered: more than the events in flight to one receive
/// thread at any rate it can take (a few seconds of events), so a run that falls behind does
/// not start inflating every copy and fall further behind.
const REMEMBERED: usize = 4096;

/// A remembered message: its compressed payload and what it inflates to.
struct Known {
    compressed: Box<[u8]>,
    text: Box<[u8]>,
}

pub struct InflateMemo {
    inflater: Inflater,
    /// Remembered messages, replaced oldest first once full.
    slots: Vec<Known>,
    /// The slot replaced next, once `slots` is full.
    next: usize,
    /// Hash of a compressed payload → its slot (the slot's payload is compared in full before
    /// it is used: a collision is a miss, not a wrong message).
    by_hash: HashMap<u64, usize, FxBuildHasher>,
    /// Frames actually inflated (the rest were remembered).
    pub inflated: u64,
}

impl InflateMemo {
    pub fn new() -> InflateMemo {
        InflateMemo {
            inflater: Inflater::new(),
            slots: Vec::new(),
            next: 0,
            by_hash: HashMap::default(),
            inflated: 0,
        }
    }

    /// The message `payload` (a compressed frame's payload) inflates to, or `None` if it does not
    /// inflate within `limit` bytes (such payloads are not remembered).
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Option<&[u8]> {
        let hash = FxBuildHasher.hash_one(payload);
        if let Some(&i) = self.by_hash.get(&hash)
            && *self.slots[i].compressed == *payload
        {
            return Some(&self.slots[i].text);
        }
        self.inflated += 1;
        let text: Box<[u8]> = self.inflater.inflate(payload, limit).ok()?.into();
        let known = Known { compressed: payload.into(), text };
        let i = if self.slots.len() < REMEMBERED {
            self.slots.push(known);
            self.slots.len() - 1
        } else {
            let i = self.next;
            self.next = (i + 1) % REMEMBERED;
            let old = FxBuildHasher.hash_one(&*self.slots[i].compressed);
            if self.by_hash.get(&old) == Some(&i) {
                self.by_hash.remove(&old);
            }
            self.slots[i] = known;
            i
        };
        self.by_hash.insert(hash, i);
        Some(&self.slots[i].text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corecast::protocol::deflate::Deflater;

    fn compress(text: &[u8]) -> Vec<u8> {
        Deflater::new().compress_payload(text).to_vec()
    }

    #[test]
    fn remembered_messages_give_what_inflating_gives() {
        let mut m = InflateMemo::new();
        let texts: Vec<Vec<u8>> =
            (0..REMEMBERED + 10).map(|i| format!("{{\"event\":\"e\",\"seq\":{i}}}").into_bytes()).collect();
        let packed: Vec<Vec<u8>> = texts.iter().map(|t| compress(t)).collect();
        // Each message three times, interleaved with the one before: repeats come from the slots.
        for i in 0..texts.len() {
            for j in [i, i.saturating_sub(1), i] {
                assert_eq!(m.inflate(&packed[j], 1 << 20), Some(texts[j].as_slice()), "message {j}");
            }
        }
        assert_eq!(m.inflated, texts.len() as u64, "each distinct message is inflated once");
        // One replaced long ago is inflated again, correctly.
        assert_eq!(m.inflate(&packed[0], 1 << 20), Some(texts[0].as_slice()));
        assert_eq!(m.inflated, texts.len() as u64 + 1);
    }

    #[test]
    fn a_payload_that_does_not_inflate_is_none_and_not_remembered() {
        let mut m = InflateMemo::new();
        assert_eq!(m.inflate(&[0xff, 0xff, 0xff], 1 << 20), None);
        assert_eq!(m.inflate(&[0xff, 0xff, 0xff], 1 << 20), None);
        assert_eq!(m.inflated, 2);
        let big = compress(&[b'a'; 4096]);
        assert_eq!(m.inflate(&big, 100), None, "over the limit");
    }
}
