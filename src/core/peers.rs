//! Messages to other cores: straight onto the ring when nothing for that peer waits, else
//! queued in order for the shard's mesh pump. Bounded by the ring; the queue behind it is
//! bounded by `outbox_limit` for broadcasts (`peer_backlogged`).

use std::task::Waker;

use super::engine::Engine;
use super::io::{CoreId, PeerLink};
use super::service::Service;

impl<S: Service> Engine<S> {
    /// The other cores of this process.
    pub(crate) fn peers(&self) -> impl Iterator<Item = CoreId> + use<S> {
        let me = self.shard();
        CoreId::all(self.settings().cores).filter(move |&p| p != me)
    }

    /// Sends `msg` to core `peer` (never this core), in order with what was sent before.
    pub(crate) fn send_to_peer(&mut self, peer: CoreId, msg: S::Peer) {
        debug_assert_ne!(peer, self.shard());
        let i = peer.index();
        let msg = match &self.peer_link {
            Some(link) if self.outbox[i].is_empty() && !self.pump_holding[i] => {
                match link.try_send(peer, msg) {
                    Ok(()) => return,
                    Err(msg) => msg,
                }
            }
            _ => msg,
        };
        let q = &mut self.outbox[i];
        q.push_back(msg);
        if q.len() == 1
            && let Some(w) = &self.outbox_waker
        {
            w.wake_by_ref();
        }
    }

    /// Whether everything this core sent to other cores is on their rings (none waits in the
    /// outbox or the pump): each peer will handle it before anything it reads later.
    pub(crate) fn all_on_rings(&self) -> bool {
        self.peer_link.is_some()
            && self.outbox.iter().all(|q| q.is_empty())
            && self.pump_holding.iter().all(|&h| !h)
    }

    /// Per peer, how many messages it had put on its ring to this core, when this core has not
    /// handled all of them yet; None when it is caught up (or has no rings).
    pub(crate) fn unhandled_marks(&self) -> Option<Vec<u64>> {
        let link = self.peer_link.as_ref()?;
        let me = self.shard();
        let pushed = |p: CoreId| if p == me { 0 } else { link.pushed_from(p) };
        // Most requests find the core caught up: look before allocating.
        let behind = CoreId::all(self.settings().cores).any(|p| pushed(p) > self.handled[p.index()]);
        behind.then(|| CoreId::all(self.settings().cores).map(pushed).collect())
    }

    /// Whether this core has handled every message counted in `marks`.
    pub(crate) fn handled_up_to(&self, marks: &[u64]) -> bool {
        marks.iter().zip(&self.handled).all(|(m, h)| h >= m)
    }

    /// Counts a message from `peer` as handled.
    pub(crate) fn count_handled(&mut self, peer: CoreId) {
        if let Some(h) = self.handled.get_mut(peer.index()) {
            *h += 1;
        }
    }

    /// Whether the queue towards `peer` is over its limit (broadcasts are then dropped).
    pub(crate) fn peer_backlogged(&self, peer: CoreId) -> bool {
        self.outbox[peer.index()].len() >= self.settings().outbox_limit
    }

    /// Messages waiting for the mesh pump, over all peers.
    pub(crate) fn outbox_len(&self) -> usize {
        self.outbox.iter().map(|q| q.len()).sum()
    }

    /// Connects the engine to the rings for direct hand-offs.
    pub(crate) fn set_peer_link(&mut self, link: Box<dyn PeerLink<S::Peer>>) {
        self.peer_link = Some(link);
    }

    /// Records whether the mesh pump holds a message for `peer` while waiting for ring room.
    pub(crate) fn set_pump_holding(&mut self, peer: CoreId, holding: bool) {
        self.pump_holding[peer.index()] = holding;
    }

    /// The mesh pump takes the next message for `peer`.
    pub(crate) fn next_for_peer(&mut self, peer: CoreId) -> Option<S::Peer> {
        self.outbox.get_mut(peer.index())?.pop_front()
    }

    /// Registers the mesh pump's waker; true if any message waits.
    pub(crate) fn pending_for_peers(&mut self, waker: &Waker) -> bool {
        match &self.outbox_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.outbox_waker = Some(waker.clone()),
        }
        self.outbox.iter().any(|q| !q.is_empty())
    }
}
