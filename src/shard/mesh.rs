//! The core-to-core mesh: one bounded SPSC channel (glommio `shared_channel`) for every ordered
//! pair of cores, built before the executors start. A receiver task per peer hands messages to
//! the core; a pump task sends what the core queued, waiting for room when a ring is full (the
//! core's own queue keeps order meanwhile).
//!
//! glommio's `MeshBuilder` is not used: its builder shares an `Rc` between threads.

use std::future::poll_fn;
use std::task::Poll;

use glommio::GlommioError;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};

use super::local::with_core;
use crate::pusher::peer::PeerMsg;

/// One core's ends of the mesh: senders to, and receivers from, every other core.
pub struct Links {
    senders: Vec<Option<SharedSender<PeerMsg>>>,
    receivers: Vec<Option<SharedReceiver<PeerMsg>>>,
}

/// Builds the N×N mesh; `links[i]` belongs to core `i`.
pub fn build(cores: usize, capacity: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..cores)
        .map(|_| Links {
            senders: (0..cores).map(|_| None).collect(),
            receivers: (0..cores).map(|_| None).collect(),
        })
        .collect();
    for from in 0..cores {
        for to in (0..cores).filter(|&t| t != from) {
            let (tx, rx) = shared_channel::new_bounded(capacity);
            links[from].senders[to] = Some(tx);
            links[to].receivers[from] = Some(rx);
        }
    }
    links
}

/// Connects this core's ends and runs the receivers and the pump until the executor stops.
pub async fn run(links: Links) {
    // Each end's `connect` completes only once its peer's end connects too: connect all ends
    // concurrently (receivers in their own tasks) or two cores would wait for each other.
    for r in links.receivers.into_iter().flatten() {
        glommio::spawn_local(async move {
            let rx = r.connect().await;
            while let Some(msg) = rx.recv().await {
                with_core(|core| core.on_peer(msg));
            }
        })
        .detach();
    }
    let connecting: Vec<Option<glommio::Task<ConnectedSender<PeerMsg>>>> =
        links.senders.into_iter().map(|s| s.map(|s| glommio::spawn_local(s.connect()))).collect();
    let mut senders: Vec<Option<ConnectedSender<PeerMsg>>> = Vec::with_capacity(connecting.len());
    for task in connecting {
        senders.push(match task {
            Some(t) => Some(t.await),
            None => None,
        });
    }
    loop {
        poll_fn(|cx| {
            if with_core(|core| core.pending_for_peers(cx.waker())) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        for (peer, sender) in senders.iter().enumerate() {
            let Some(sender) = sender else { continue };
            while let Some(msg) = with_core(|core| core.next_for_peer(peer)) {
                match sender.try_send(msg) {
                    Ok(()) => {}
                    Err(GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => {
                        // Ring full: wait for room, keeping order (the message goes first).
                        with_core(|core| core.requeue_for_peer(peer, msg));
                        let Some(msg) = with_core(|core| core.next_for_peer(peer)) else { break };
                        if sender.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break, // peer gone (shutting down)
                }
            }
        }
    }
}
