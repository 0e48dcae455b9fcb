//! Webhooks: `channel_occupied`, `channel_vacated`, `member_added`, `member_removed`,
//! `client_event`, `cache_miss` and (when enabled) `subscription_count`, POSTed to each app's
//! URLs in Pusher's batched, signed form. A URL may take only some event types and channels
//! (`pusher::hook_targets`) and adds its configured headers.
//!
//! A core only pushes an event into its own lock-free SPSC ring (`rtrb`) and never waits: when
//! the ring is full the event is dropped and counted. A dispatcher thread drains the rings,
//! batches events per app, serialises and signs each body once, and hands it to one delivery
//! thread per URL, which POSTs with timeouts and retries with backoff. A slow or dead receiver
//! delays only its own URL's queue.

mod sender;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::io::Outlet;
use crate::pusher::wire::Hook;

pub(crate) use sender::start;

/// A core's end of its ring to the dispatcher.
pub(crate) struct Sink(rtrb::Producer<Hook>);

impl Outlet<Hook> for Sink {
    fn push(&mut self, hook: Hook) -> Result<(), Hook> {
        self.0.push(hook).map_err(|rtrb::PushError::Full(h)| h)
    }
}

/// Events a core may have waiting for the dispatcher.
pub(crate) const RING: usize = 65_536;

/// Delivery counters, written by the sender threads and read at /metrics scrapes.
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    queued: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};

/// A snapshot of the delivery counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub(crate) queued: u64,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
}

pub(crate) fn counters() -> Snapshot {
    Snapshot {
        queued: COUNTERS.queued.load(Ordering::Relaxed),
        sent: COUNTERS.sent.load(Ordering::Relaxed),
        failed: COUNTERS.failed.load(Ordering::Relaxed),
        dropped: COUNTERS.dropped.load(Ordering::Relaxed),
    }
}

/// The signed body of a batch: `{"time_ms":…,"events":[…]}` and its `X-Pusher-Signature`.
pub(crate) fn body(time_ms: u64, events: &[&str], secret: &str) -> (String, String) {
    let mut body = format!("{{\"time_ms\":{time_ms},\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    let signature = crate::pusher::auth::sign(secret, &[body.as_bytes()]);
    (body, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_signed_as_sent() {
        let (b, sig) = body(1, &[r#"{"name":"channel_occupied","channel":"a"}"#], "secret");
        assert_eq!(b, r#"{"time_ms":1,"events":[{"name":"channel_occupied","channel":"a"}]}"#);
        assert_eq!(sig, crate::pusher::auth::sign("secret", &[b.as_bytes()]));
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["events"][0]["channel"], "a");
    }
}
