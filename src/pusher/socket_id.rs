//! Socket ids: `A.B`, digits only (the SDKs check `^\d+\.\d+$`). `A` names the node and the
//! core (`node * 1000 + shard`), `B` the connection (`generation << 32 | slab index`), so an id is
//! unique across cores and nodes, is never reused while the server runs (generations only grow),
//! and routes back to its connection without a lookup table.

use crate::core::conn::ConnKey;
use crate::core::io::CoreId;

/// A node of the cluster (a corecast process), 1..=999,999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId(pub(crate) u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Most cores per node that socket ids can name.
pub(crate) const MAX_CORES: u16 = 1000;

/// Where a connection lives: node, core, slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SocketRef {
    /// The node.
    pub(crate) node: NodeId,
    /// The core on that node.
    pub(crate) shard: CoreId,
    /// The connection on that core.
    pub(crate) key: ConnKey,
}

impl SocketRef {
    /// The socket id, `A.B`.
    pub(crate) fn format(&self) -> String {
        let a = u64::from(self.node.0) * u64::from(MAX_CORES) + u64::from(self.shard.0);
        let b = (u64::from(self.key.generation) << 32) | u64::from(self.key.idx);
        format!("{a}.{b}")
    }

    /// Parses a socket id; None if it is not one of ours.
    pub(crate) fn parse(s: &str) -> Option<SocketRef> {
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
        let cores = u64::from(MAX_CORES);
        Some(SocketRef {
            node: NodeId(u32::try_from(a / cores).ok()?),
            shard: CoreId(u16::try_from(a % cores).ok()?),
            key: ConnKey {
                idx: u32::try_from(b & u64::from(u32::MAX)).ok()?,
                generation: u32::try_from(b >> 32).ok()?,
            },
        })
    }
}

/// A random node id in 1..=999,999 (std's `RandomState` keys come from the OS's randomness and
/// differ per call).
pub(crate) fn random_node_id() -> NodeId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    NodeId(u32::try_from(h.finish() % 999_999).expect("below 999,999") + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_sdk_pattern() {
        let r =
            SocketRef { node: NodeId(123_456), shard: CoreId(7), key: ConnKey { idx: 42, generation: 9 } };
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
