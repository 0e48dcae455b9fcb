//! The core-to-core mesh: one bounded SPSC channel (glommio `shared_channel`) for every ordered
//! pair of cores, built before the executors start. A receiver task per peer hands messages to
//! the core; a pump task sends what the core queued, waiting for room when a ring is full (the
//! core's own queue keeps order meanwhile).
//!
//! Each ring also has a count of the messages put on it (an atomic the sender increments after
//! a push and the receiving core reads): part of the ring's own bookkeeping, it lets a core
//! know whether it has handled everything a peer sent before some moment (see
//! `Engine::unhandled_marks`).
//!
//! glommio's `MeshBuilder` is not used: its builder shares an `Rc` between threads.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use glommio::GlommioError;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};

use super::local::with_core;
use crate::core::io::{CoreId, PeerLink};
use crate::pusher::peer::PeerMsg;

type Senders = Rc<Vec<Option<ConnectedSender<PeerMsg>>>>;
/// Per peer, the count of messages on one ring (None for the core itself).
type Counts = Rc<Vec<Option<Arc<AtomicU64>>>>;

/// The core's direct path onto the rings.
struct Link {
    senders: Senders,
    /// Messages this core put on its ring to each peer.
    sent: Counts,
    /// Messages each peer put on its ring to this core.
    received: Vec<Option<Arc<AtomicU64>>>,
}

impl PeerLink<PeerMsg> for Link {
    fn try_send(&self, peer: CoreId, msg: PeerMsg) -> Result<(), PeerMsg> {
        match self.senders.get(peer.index()) {
            Some(Some(sender)) => {
                sender.try_send(msg).map_err(|e| match e {
                    GlommioError::WouldBlock(glommio::ResourceType::Channel(m))
                    | GlommioError::Closed(glommio::ResourceType::Channel(m)) => m,
                    other => panic!("unexpected ring error: {other:?}"),
                })?;
                count(&self.sent, peer.index());
                Ok(())
            }
            _ => Err(msg),
        }
    }

    fn pushed_from(&self, peer: CoreId) -> u64 {
        self.received.get(peer.index()).and_then(Option::as_ref).map_or(0, |c| c.load(Ordering::Acquire))
    }
}

/// Counts a message put on the ring to `peer` (after the push, so that a counted message is
/// readable).
fn count(sent: &Counts, peer: usize) {
    if let Some(Some(c)) = sent.get(peer) {
        c.fetch_add(1, Ordering::Release);
    }
}

/// One core's ends of the mesh: senders to, and receivers from, every other core, with the
/// rings' counts.
pub(super) struct Links {
    senders: Vec<Option<SharedSender<PeerMsg>>>,
    receivers: Vec<Option<SharedReceiver<PeerMsg>>>,
    sent: Vec<Option<Arc<AtomicU64>>>,
    received: Vec<Option<Arc<AtomicU64>>>,
}

/// Builds the N×N mesh; `links[i]` belongs to core `i`.
pub(super) fn build(cores: usize, capacity: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..cores)
        .map(|_| Links {
            senders: (0..cores).map(|_| None).collect(),
            receivers: (0..cores).map(|_| None).collect(),
            sent: (0..cores).map(|_| None).collect(),
            received: (0..cores).map(|_| None).collect(),
        })
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&t| t != from) {
            let (tx, rx) = shared_channel::new_bounded(capacity);
            let pushed = Arc::new(AtomicU64::new(0));
            links[from].senders[to] = Some(tx);
            links[from].sent[to] = Some(pushed.clone());
            links[to].receivers[from] = Some(rx);
            links[to].received[from] = Some(pushed);
        }
    }
    links
}

/// Connects this core's ends and runs the receivers and the pump until the executor stops.
pub(super) async fn run(links: Links) {
    // Each end's `connect` completes only once its peer's end connects too: connect all ends
    // concurrently (receivers in their own tasks) or two cores would wait for each other.
    for (from, r) in links.receivers.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let from = CoreId(u16::try_from(from).expect("cores fit u16"));
        glommio::spawn_local(async move {
            let rx = r.connect().await;
            while let Some(msg) = rx.recv().await {
                with_core(|core| core.on_peer(from, msg));
            }
        })
        .detach();
    }
    let sent: Counts = Rc::new(links.sent);
    let received = links.received;
    let connecting: Vec<Option<glommio::Task<ConnectedSender<PeerMsg>>>> =
        links.senders.into_iter().map(|s| s.map(|s| glommio::spawn_local(s.connect()))).collect();
    let mut connected: Vec<Option<ConnectedSender<PeerMsg>>> = Vec::with_capacity(connecting.len());
    for task in connecting {
        connected.push(match task {
            Some(t) => Some(t.await),
            None => None,
        });
    }
    let senders: Senders = Rc::new(connected);
    with_core(|core| {
        core.e.set_peer_link(Box::new(Link { senders: senders.clone(), sent: sent.clone(), received }))
    });
    loop {
        poll_fn(|cx| {
            if with_core(|core| core.e.pending_for_peers(cx.waker())) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        for (i, sender) in senders.iter().enumerate() {
            let Some(sender) = sender else { continue };
            let peer = CoreId(u16::try_from(i).expect("cores fit u16"));
            while let Some(msg) = with_core(|core| core.e.next_for_peer(peer)) {
                match sender.try_send(msg) {
                    Ok(()) => count(&sent, i),
                    Err(GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => {
                        // Ring full: wait for room. Until it is sent, the core must not hand
                        // later messages for this peer to the ring directly.
                        with_core(|core| core.e.set_pump_holding(peer, true));
                        let result = sender.send(msg).await;
                        if result.is_ok() {
                            count(&sent, i);
                        }
                        with_core(|core| core.e.set_pump_holding(peer, false));
                        if result.is_err() {
                            break;
                        }
                    }
                    Err(_) => break, // peer gone (shutting down)
                }
            }
        }
    }
}
