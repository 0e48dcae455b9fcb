//! The engine's consistency rules, checked by the fuzzers and tests after each step: the
//! connection table agrees with its counters and lists, and no connection's state grows
//! beyond its limits.

use super::conn::{Inbound, flag};
use super::engine::Engine;
use super::service::Service;
use crate::protocol::http;

/// Bytes one read can add to an echo connection's queue before it stops reading.
const READ_SLACK: usize = 2 * 64 * 1024;

impl<S: Service> Engine<S> {
    /// Panics, saying which rule, if the engine is inconsistent. Call between entry points.
    pub(crate) fn check_invariants(&self) {
        let s = self.settings();
        let counted = self.conns.iter().filter(|(_, c)| c.has(flag::COUNTED)).count();
        assert_eq!(counted, self.ws_count, "ws_count matches the counted connections");
        let queued: usize = self.conns.iter().map(|(_, c)| c.queued_bytes()).sum();
        assert_eq!(queued, self.queued, "the queued total matches the connections' queues");
        assert!(self.urgent.is_empty() && self.resume.is_empty() && self.over_budget.is_empty(), "settled");
        let queue_bound = s.max_outbound_bytes + 2 * s.limits.max_message + READ_SLACK;
        let head_bound = http::MAX_HEAD + s.max_body + READ_SLACK;
        for (idx, c) in &self.conns {
            let key = c.key(u32::try_from(idx).expect("slab index fits u32"));
            assert_ne!(c.generation, 0, "generations start at 1");
            if let Some(q) = &c.out {
                assert!(!q.is_empty(), "an empty queue is freed");
            }
            assert!(c.queued_bytes() <= queue_bound, "queue of {key:?} is {} bytes", c.queued_bytes());
            match c.inbound.as_deref() {
                Some(Inbound::Head(h)) => {
                    assert!(h.len() <= head_bound, "request head of {key:?} is {} bytes", h.len())
                }
                Some(Inbound::Frame(p)) => {
                    assert!(p.heap_bytes() <= 2 * s.limits.max_message + 1024, "partial message of {key:?}")
                }
                None => {}
            }
            if c.has(flag::DIRTY) {
                assert!(self.dirty.iter().any(|d| d.key == key), "a dirty connection is on the dirty list");
            }
        }
    }
}
