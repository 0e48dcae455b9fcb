//! Socket ids: `A.B`, digits only (the SDKs check `^\d+\.\d+$`). `A` names the node and the
//! core (`node * 1000 + shard`), `B` the connection (`generation << 32 | slab index`), so an id is
//! unique across cores and nodes, is never reused while the server runs (generations only grow),
//! and routes back to its connection without a lookup table.

use crate::core::conn::ConnKey;

/// Where a connection lives: node, core, slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketRef {
    pub node: u32,
    pub shard: u32,
    pub key: ConnKey,
}

impl SocketRef {
    pub fn format(&self) -> String {
        let a = self.node as u64 * 1000 + self.shard as u64;
        let b = ((self.key.generation as u64) << 32) | self.key.idx as u64;
        format!("{a}.{b}")
    }

    pub fn parse(s: &str) -> Option<SocketRef> {
        let (a, b) = s.split_once('.')?;
        if a.is_empty()
            || b.is_empty()
            || !a.bytes().all(|c| c.is_ascii_digit())
            || !b.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let a: u64 = a.parse().ok()?;
        let b: u64 = b.parse().ok()?;
        Some(SocketRef {
            node: u32::try_from(a / 1000).ok()?,
            shard: (a % 1000) as u32,
            key: ConnKey { idx: b as u32, generation: (b >> 32) as u32 },
        })
    }
}

/// A node id for this process: random in 1..=999_999 unless configured.
pub fn random_node_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    (h.finish() % 999_999) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_sdk_pattern() {
        let r = SocketRef { node: 123_456, shard: 7, key: ConnKey { idx: 42, generation: 9 } };
        let s = r.format();
        assert!(s.split_once('.').is_some_and(
            |(a, b)| a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
        ));
        assert_eq!(SocketRef::parse(&s), Some(r));
        assert_eq!(SocketRef::parse("12.x"), None);
        assert_eq!(SocketRef::parse("1.2.3"), None);
        assert_eq!(SocketRef::parse(".5"), None);
    }
}
