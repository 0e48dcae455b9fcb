//! A Pusher connection's own bytes in its slab entry (`Conn::ext`), and its flags in the
//! entry's service flags. Subscriptions beyond the first live in a per-core map
//! (`Pusher::more_subs`), so the common connection — one channel — carries no heap.

use super::apps::AppIdx;
use super::channels::ChannelId;

/// Bits of `PusherConn::flags`.
pub(crate) mod flag {
    /// `connection_established` was sent (the app's quota admitted it).
    pub(crate) const ADMITTED: u8 = 1 << 0;
    /// Signed in with `pusher:signin`.
    pub(crate) const SIGNED_IN: u8 = 1 << 1;
    /// Has subscriptions in `Pusher::more_subs`.
    pub(crate) const MORE_SUBS: u8 = 1 << 2;
    /// Signed in, or subscribed to a channel that needed the app's signature (authorized
    /// connections).
    pub(crate) const AUTHORIZED: u8 = 1 << 3;
}

/// Per-connection Pusher state. 12 bytes: the first subscription 4, the app 2, the client-event
/// rate window's second 2 and count 1, flags 1, padding 2.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PusherConn {
    /// The first channel subscribed to (or joining).
    pub(crate) first_sub: Option<ChannelId>,
    /// The app the connection belongs to.
    pub(crate) app: AppIdx,
    /// Low 16 bits of the second `rate_count` counts client events in.
    pub(crate) rate_second: u16,
    /// Client events sent in second `rate_second`.
    pub(crate) rate_count: u8,
    /// `flag` bits.
    pub(crate) flags: u8,
}

const _: () = assert!(std::mem::size_of::<PusherConn>() == 12);
const _: () = assert!(std::mem::size_of::<crate::core::conn::Conn<PusherConn>>() <= 80);

impl super::Pusher {
    /// Whether connection `key` is subscribed to (or joining) channel `id`.
    pub(crate) fn is_subscribed(
        &self,
        e: &super::Net,
        key: crate::core::conn::ConnKey,
        id: ChannelId,
    ) -> bool {
        let Some(conn) = e.conn(key) else { return false };
        conn.ext.first_sub == Some(id)
            || (conn.ext.flags & flag::MORE_SUBS != 0
                && self.more_subs.get(&key.idx).is_some_and(|m| m.contains(&id)))
    }

    /// How many channels connection `key` is subscribed to (or joining).
    pub(crate) fn sub_count(&self, e: &super::Net, key: crate::core::conn::ConnKey) -> usize {
        let Some(conn) = e.conn(key) else { return 0 };
        usize::from(conn.ext.first_sub.is_some())
            + if conn.ext.flags & flag::MORE_SUBS != 0 {
                self.more_subs.get(&key.idx).map_or(0, Vec::len)
            } else {
                0
            }
    }

    /// Records that connection `key` subscribes to (or joins) channel `id`.
    pub(crate) fn add_sub(&mut self, e: &mut super::Net, key: crate::core::conn::ConnKey, id: ChannelId) {
        let Some(conn) = e.conn_mut(key) else { return };
        if conn.ext.first_sub.is_none() {
            conn.ext.first_sub = Some(id);
        } else {
            conn.ext.flags |= flag::MORE_SUBS;
            self.more_subs.entry(key.idx).or_default().push(id);
        }
    }

    /// Forgets connection `key`'s subscription to `id`; false if it had none.
    pub(crate) fn remove_sub(
        &mut self,
        e: &mut super::Net,
        key: crate::core::conn::ConnKey,
        id: ChannelId,
    ) -> bool {
        let Some(conn) = e.conn_mut(key) else { return false };
        let more = conn.ext.flags & flag::MORE_SUBS != 0;
        let removed = if conn.ext.first_sub == Some(id) {
            conn.ext.first_sub =
                if more { self.more_subs.get_mut(&key.idx).and_then(Vec::pop) } else { None };
            true
        } else if more && let Some(list) = self.more_subs.get_mut(&key.idx) {
            match list.iter().position(|&x| x == id) {
                Some(pos) => {
                    list.swap_remove(pos);
                    true
                }
                None => false,
            }
        } else {
            false
        };
        if more && self.more_subs.get(&key.idx).is_none_or(Vec::is_empty) {
            self.more_subs.remove(&key.idx);
            conn.ext.flags &= !flag::MORE_SUBS;
        }
        removed
    }

    /// Takes every subscription of connection `key` (it is closing).
    pub(crate) fn take_subs(
        &mut self,
        e: &mut super::Net,
        key: crate::core::conn::ConnKey,
    ) -> Vec<ChannelId> {
        let Some(conn) = e.conn_mut(key) else { return Vec::new() };
        let mut all: Vec<ChannelId> = conn.ext.first_sub.take().into_iter().collect();
        if conn.ext.flags & flag::MORE_SUBS != 0 {
            conn.ext.flags &= !flag::MORE_SUBS;
            all.extend(self.more_subs.remove(&key.idx).unwrap_or_default());
        }
        all
    }
}
