//! Order between publishes that reach different cores. A backend that publishes event 1, gets
//! its answer, then publishes event 2 expects every subscriber to get 1 before 2, even when the
//! two requests land on different cores (different connections, SO_REUSEPORT).
//!
//! - The core that takes event 1 puts it on every peer's ring before it answers; when the rings
//!   took it at once (nothing waits in the outbox), it answers right away, else after a round of
//!   `Sync` questions (each peer has then handled it).
//! - A core that takes a publish request first checks that it has handled everything its peers
//!   had put on its rings by then (`Engine::unhandled_marks`); if not, the request is held, and
//!   presented again once the core's ring receivers got that far. Event 1 was on the ring
//!   before its answer, so before event 2's request arrived: it is delivered first.

use super::{Net, Pusher};
use crate::core::conn::ConnKey;

/// Held publish requests, oldest first.
#[derive(Default)]
pub(crate) struct Held {
    /// A connection's request and the ring counts it waits for.
    waiting: Vec<(ConnKey, Vec<u64>)>,
    /// Connections released whose request is presented again: let it through once, even if
    /// more arrived on the rings meanwhile.
    released: Vec<ConnKey>,
}

impl Pusher {
    /// Whether the publish request arriving on `key` must wait for this core to handle what
    /// other cores had sent it (the request is then kept and presented again later).
    pub(crate) fn hold_publish(&mut self, e: &Net, key: ConnKey) -> bool {
        let held = &mut self.publish_order;
        if let Some(i) = held.released.iter().position(|&k| k == key) {
            held.released.swap_remove(i);
            return false;
        }
        match e.unhandled_marks() {
            Some(marks) => {
                held.waiting.push((key, marks));
                true
            }
            None => false,
        }
    }

    /// Presents again the held requests whose messages this core has now handled.
    pub(crate) fn release_publishes(&mut self, e: &mut Net) {
        let held = &mut self.publish_order;
        if held.waiting.is_empty() {
            return;
        }
        let mut i = 0;
        while i < held.waiting.len() {
            if e.handled_up_to(&held.waiting[i].1) {
                let (key, _) = held.waiting.remove(i);
                if e.conn(key).is_some() {
                    held.released.push(key);
                    e.release_held(key);
                }
            } else {
                i += 1;
            }
        }
    }
}
