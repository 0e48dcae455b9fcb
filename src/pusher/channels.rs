//! The per-core channel index: interned channel ids and each channel's local subscribers.
//! A connection keeps only the ids (`Subs`); the name lives here once per core.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxBuildHasher;
use slab::Slab;

use super::names::Class;

pub struct Channel {
    pub app: u32,
    pub name: Box<str>,
    pub class: Class,
    /// Slab indexes of the local connections subscribed.
    pub subscribers: HashSet<u32, FxBuildHasher>,
    /// Presence joins sent to the owner core and not answered yet (they hold the id).
    pub pending: u32,
}

#[derive(Default)]
pub struct Channels {
    /// Per app: name → id.
    ids: Vec<HashMap<Box<str>, u32, FxBuildHasher>>,
    entries: Slab<Channel>,
}

impl Channels {
    /// Ids start at 1 so that a connection's first subscription fits a `NonZeroU32`.
    pub fn lookup(&self, app: u32, name: &str) -> Option<u32> {
        self.ids.get(app as usize)?.get(name).copied()
    }

    pub fn intern(&mut self, app: u32, name: &str, class: Class) -> u32 {
        if let Some(id) = self.lookup(app, name) {
            return id;
        }
        let id = self.entries.insert(Channel {
            app,
            name: name.into(),
            class,
            subscribers: HashSet::default(),
            pending: 0,
        }) as u32
            + 1;
        if self.ids.len() <= app as usize {
            self.ids.resize_with(app as usize + 1, HashMap::default);
        }
        self.ids[app as usize].insert(name.into(), id);
        id
    }

    pub fn get(&self, id: u32) -> Option<&Channel> {
        self.entries.get(id.checked_sub(1)? as usize)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Channel> {
        self.entries.get_mut(id.checked_sub(1)? as usize)
    }

    /// Forgets a channel nobody here subscribes to or waits for.
    pub fn release_if_unused(&mut self, id: u32) {
        let unused = self.get(id).is_some_and(|c| c.subscribers.is_empty() && c.pending == 0);
        if unused {
            let c = self.entries.remove(id as usize - 1);
            self.ids[c.app as usize].remove(&c.name);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Channel)> {
        self.entries.iter().map(|(i, c)| (i as u32 + 1, c))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::names::classify;

    #[test]
    fn intern_lookup_release() {
        let mut c = Channels::default();
        let a = c.intern(0, "a", classify("a"));
        assert_eq!(c.intern(0, "a", classify("a")), a);
        let other_app = c.intern(1, "a", classify("a"));
        assert_ne!(a, other_app);
        c.get_mut(a).unwrap().subscribers.insert(5);
        c.release_if_unused(a);
        assert_eq!(c.lookup(0, "a"), Some(a));
        c.get_mut(a).unwrap().subscribers.remove(&5);
        c.release_if_unused(a);
        assert_eq!(c.lookup(0, "a"), None);
        assert!(a >= 1);
    }
}
