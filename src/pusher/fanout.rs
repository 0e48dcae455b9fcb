//! Publishing: an event encoded once is handed to every other core (and, in a cluster, to the
//! Redis bridge) as one shared message, and queued for this core's subscribers; the engine
//! writes each subscriber's due frames with one send per turn.

use std::sync::Arc;

use bytes::Bytes;

use super::apps::AppIdx;
use super::names::{self, Kind};
use super::peer::PeerMsg;
use super::socket_id::SocketRef;
use super::wire::{ClusterOut, Publish};
use super::{Cached, Net, Pusher};
use crate::protocol::deflate::CompressedFrame;
use crate::protocol::frame::{self, Opcode};

impl Pusher {
    /// Delivers `frame` to every subscriber of `channel` on every core (and node), except
    /// `except`. For cache channels, `cache` is the event's `data`, and the event becomes the
    /// channel's last.
    pub(crate) fn publish(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        channel: &str,
        frame: Bytes,
        except: Option<SocketRef>,
        cache: Option<Box<str>>,
    ) {
        self.stats.published += 1;
        let compressed = e.compress(Opcode::Text, frame::payload_of(&frame));
        let p = Publish { app, channel: channel.into(), frame, compressed, except, cache };
        if e.settings().cores == 1 && self.cluster.is_none() {
            return self.deliver_local(e, &p, &p.frame, p.compressed.as_ref());
        }
        // One shared message for every other core and for the other nodes.
        let p = Arc::new(p);
        if self.cluster.is_some() && self.cluster_send(ClusterOut::Publish(p.clone())).is_err() {
            self.stats.cluster_dropped += 1;
        }
        for peer in e.peers() {
            if e.peer_backlogged(peer) {
                self.stats.ring_overflows += 1;
                continue;
            }
            e.send_to_peer(peer, PeerMsg::Publish(p.clone()));
        }
        self.deliver_local(e, &p, &p.frame, p.compressed.as_ref());
    }

    /// An event published on another core or node: queued for this core's subscribers from a
    /// core-local copy of its frame (one copy per core), so that the per-subscriber reference
    /// counts stay in this core's cache instead of bouncing between cores.
    pub(crate) fn deliver_remote(&mut self, e: &mut Net, p: &Publish) {
        let frame = Bytes::copy_from_slice(&p.frame);
        let compressed = p
            .compressed
            .as_ref()
            .map(|c| CompressedFrame { frame: Bytes::copy_from_slice(&c.frame), window_bits: c.window_bits });
        self.deliver_local(e, p, &frame, compressed.as_ref());
    }

    /// Whether a publish would be accepted by every core's queue now: false when this core's
    /// queued output or a ring to another core is over its bound (the HTTP API then pushes
    /// back instead of growing queues without limit).
    pub(crate) fn can_publish(&self, e: &Net) -> bool {
        !e.backlogged() && e.peers().all(|p| !e.peer_backlogged(p))
    }

    /// Queues `frame` (the event's, or a copy of it) for this core's subscribers of its channel
    /// (for `#server-to-user-{id}`: the connections signed in as `id`).
    fn deliver_local(
        &mut self,
        e: &mut Net,
        p: &Publish,
        frame: &Bytes,
        compressed: Option<&CompressedFrame>,
    ) {
        let (app, channel) = (p.app, &*p.channel);
        if let Some(data) = &p.cache {
            let cached = Cached { frame: frame.clone(), data: data.clone(), at: e.now() };
            self.cache[app.index()].insert(channel.into(), cached);
        }
        let skip = p.except.filter(|s| s.node == self.node() && s.shard == e.shard()).map(|s| s.key);
        let mut deliveries = 0;
        let mut deliver = |idx: u32| {
            if skip.is_some_and(|k| k.idx == idx && e.conn(k).is_some()) {
                return;
            }
            if e.push(idx, frame, compressed) {
                deliveries += 1;
            }
        };
        if names::classify(channel).kind == Kind::User {
            let user = &channel[names::USER_PREFIX.len()..];
            if let Some(conns) = self.users[app.index()].get(user) {
                conns.iter().copied().for_each(&mut deliver);
            }
        } else if let Some(ch) = self.channels.lookup(app, channel).and_then(|id| self.channels.get(id)) {
            ch.subscribers.iter().copied().for_each(&mut deliver);
        }
        self.stats.deliveries += deliveries;
    }
}
