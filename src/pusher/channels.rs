//! The per-core channel index: interned channel ids and each channel's local subscribers.
//! A connection keeps only the ids; the name lives here once per core.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use rustc_hash::FxBuildHasher;
use slab::Slab;

use super::apps::AppIdx;
use super::names::Class;

/// A channel interned on this core (ids are per core and reused once a channel is released).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChannelId(NonZeroU32);

impl ChannelId {
    fn slot(self) -> usize {
        self.0.get() as usize - 1
    }

    fn of_slot(slot: usize) -> ChannelId {
        let id = u32::try_from(slot + 1).expect("fewer than 2^32 channels per core");
        ChannelId(NonZeroU32::new(id).expect("slot + 1 is not zero"))
    }
}

pub(crate) struct Channel {
    pub(crate) app: AppIdx,
    pub(crate) name: Box<str>,
    pub(crate) class: Class,
    /// Slab indexes of the local connections subscribed.
    pub(crate) subscribers: HashSet<u32, FxBuildHasher>,
    /// Presence joins sent to the owner core and not answered yet (they hold the id).
    pub(crate) pending: u32,
}

#[derive(Default)]
pub(crate) struct Channels {
    /// Per app: name → id.
    ids: Vec<HashMap<Box<str>, ChannelId, FxBuildHasher>>,
    entries: Slab<Channel>,
}

impl Channels {
    pub(crate) fn lookup(&self, app: AppIdx, name: &str) -> Option<ChannelId> {
        self.ids.get(app.index())?.get(name).copied()
    }

    pub(crate) fn intern(&mut self, app: AppIdx, name: &str, class: Class) -> ChannelId {
        if let Some(id) = self.lookup(app, name) {
            return id;
        }
        let slot = self.entries.insert(Channel {
            app,
            name: name.into(),
            class,
            subscribers: HashSet::default(),
            pending: 0,
        });
        let id = ChannelId::of_slot(slot);
        if self.ids.len() <= app.index() {
            self.ids.resize_with(app.index() + 1, HashMap::default);
        }
        self.ids[app.index()].insert(name.into(), id);
        id
    }

    pub(crate) fn get(&self, id: ChannelId) -> Option<&Channel> {
        self.entries.get(id.slot())
    }

    pub(crate) fn get_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        self.entries.get_mut(id.slot())
    }

    /// Forgets a channel nobody here subscribes to or waits for.
    pub(crate) fn release_if_unused(&mut self, id: ChannelId) {
        let unused = self.get(id).is_some_and(|c| c.subscribers.is_empty() && c.pending == 0);
        if unused {
            let c = self.entries.remove(id.slot());
            self.ids[c.app.index()].remove(&c.name);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ChannelId, &Channel)> {
        self.entries.iter().map(|(i, c)| (ChannelId::of_slot(i), c))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::names::classify;

    #[test]
    fn intern_lookup_release() {
        let mut c = Channels::default();
        let a = c.intern(AppIdx(0), "a", classify("a"));
        assert_eq!(c.intern(AppIdx(0), "a", classify("a")), a);
        let other_app = c.intern(AppIdx(1), "a", classify("a"));
        assert_ne!(a, other_app);
        c.get_mut(a).unwrap().subscribers.insert(5);
        c.release_if_unused(a);
        assert_eq!(c.lookup(AppIdx(0), "a"), Some(a));
        c.get_mut(a).unwrap().subscribers.remove(&5);
        c.release_if_unused(a);
        assert_eq!(c.lookup(AppIdx(0), "a"), None);
    }
}
