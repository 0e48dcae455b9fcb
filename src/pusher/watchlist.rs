//! Watchlist events (Pusher's "watchlist online status"): a connection that signs in with
//! `watchlist: [user ids]` in its `user_data` receives `pusher_internal:watchlist_events` — first
//! the current state (`online` and `offline` events listing the users), then every change. A
//! user is online while at least one connection anywhere is signed in as them.
//!
//! Each user's state lives on one owner core per node (`user_owner`): the connections signed in
//! as the user on this node (any core), and this node's connections watching the user. Without
//! a cluster the owner decides: online once the first connection signs in, offline after the
//! last one goes. With a cluster, Redis decides (`cluster::bridge::users`): the owner reports the
//! user's first and last connection on this node, an atomic script says whether that makes the
//! user online or offline in the cluster and publishes the change, with a cluster-wide sequence
//! number, to every node; each node's owner applies a state only if it is newer than the one it
//! has, so answers and bus messages arriving in any order settle on the latest.
//!
//! A watcher's core sends its watchlist to the owner cores (grouped), collects their answers
//! (the owner adds the watcher when it answers, so no change overtakes the initial state), and
//! sends the initial state as one event. Changes that reach the watcher's core before that are
//! folded into it.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

use super::apps::AppIdx;
use super::messages;
use super::peer::PeerMsg;
use super::socket_id::SocketRef;
use super::wire::ClusterOut;
use super::{Net, Pusher, QUESTION_TIMEOUT, user_owner};
use crate::core::conn::ConnKey;
use crate::core::io::CoreId;

type Sockets = HashSet<SocketRef, FxBuildHasher>;

/// A user's online state and watchers on the user's owner core.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// This node's connections signed in as the user (any core).
    pub(crate) sockets: Sockets,
    /// This node's connections watching the user that were told its state.
    pub(crate) watchers: Sockets,
    /// Watch requests naming the user that are not answered yet (they keep the entry).
    pub(crate) pending: u32,
    /// Of those, the ones waiting for the cluster's answer about this user (by watcher).
    pub(crate) waits: Vec<SocketRef>,
    /// Online anywhere (in the cluster).
    pub(crate) online: bool,
    /// Cluster order of `online` (0: decided on this node).
    pub(crate) seq: u64,
    /// `online` is known: always without a cluster; with one, once the cluster answered.
    pub(crate) known: bool,
    /// A status question about the user is with the cluster.
    pub(crate) asking: bool,
}

impl Watched {
    fn unused(&self) -> bool {
        self.sockets.is_empty() && self.watchers.is_empty() && self.pending == 0
    }
}

/// A connection's initial watchlist state, gathered from the owner cores.
#[derive(Debug)]
pub(crate) struct WatchInit {
    pub(crate) key: ConnKey,
    /// Owner cores that have not answered.
    pub(crate) waiting: usize,
    pub(crate) online: Vec<Box<str>>,
    pub(crate) offline: Vec<Box<str>>,
}

/// On an owner core: a watch request waiting for the cluster's answer about some of its users
/// (kept by watcher: a watcher sends each owner core one request).
#[derive(Debug)]
pub(crate) struct WatchWait {
    pub(crate) app: AppIdx,
    pub(crate) users: Vec<Box<str>>,
    /// Users whose state is not known yet.
    pub(crate) missing: usize,
    /// Core second after which unknown users are taken as this node sees them.
    pub(crate) deadline: u32,
}

/// Groups users by their owner core.
fn by_owner(app: AppIdx, users: &[Box<str>], cores: u16) -> BTreeMap<CoreId, Vec<Box<str>>> {
    let mut groups: BTreeMap<CoreId, Vec<Box<str>>> = BTreeMap::new();
    for u in users {
        groups.entry(user_owner(app, u, cores)).or_default().push(u.clone());
    }
    groups
}

impl Pusher {
    // ---- the signed-in user's side ----

    /// Connection `from` signed in as `user`: tell the user's owner core.
    pub(crate) fn report_signin(&mut self, e: &mut Net, app: AppIdx, user: &str, from: SocketRef) {
        let owner = user_owner(app, user, e.settings().cores);
        if owner == e.shard() {
            self.online_add(e, app, user, from);
        } else {
            e.send_to_peer(owner, PeerMsg::UserSignedIn { app, user: user.into(), from });
        }
    }

    /// Connection `from`, signed in as `user`, went.
    pub(crate) fn report_signout(&mut self, e: &mut Net, app: AppIdx, user: &str, from: SocketRef) {
        let owner = user_owner(app, user, e.settings().cores);
        if owner == e.shard() {
            self.online_remove(e, app, user, from);
        } else {
            e.send_to_peer(owner, PeerMsg::UserSignedOut { app, user: user.into(), from });
        }
    }

    // ---- the watcher's side ----

    /// After a sign-in with a (deduplicated, non-empty) watchlist: ask the owner cores.
    pub(crate) fn start_watching(&mut self, e: &mut Net, key: ConnKey, app: AppIdx, list: Vec<Box<str>>) {
        let watcher = self.socket_ref(e, key);
        let groups = by_owner(app, &list, e.settings().cores);
        self.watchlists.insert(key.idx, list.into_boxed_slice());
        let init = WatchInit { key, waiting: groups.len(), online: Vec::new(), offline: Vec::new() };
        self.watch_init.insert(key.idx, init);
        for (owner, users) in groups {
            if owner == e.shard() {
                self.watch(e, app, watcher, users);
            } else {
                e.send_to_peer(owner, PeerMsg::Watch { app, watcher, users });
            }
        }
    }

    /// An owner core's answer: the state of its share of `to`'s watchlist.
    pub(crate) fn on_watching(
        &mut self,
        e: &mut Net,
        to: ConnKey,
        online: Vec<Box<str>>,
        offline: Vec<Box<str>>,
    ) {
        let Some(init) = self.watch_init.get_mut(&to.idx).filter(|i| i.key == to) else { return };
        init.online.extend(online);
        init.offline.extend(offline);
        init.waiting = init.waiting.saturating_sub(1);
        if init.waiting > 0 {
            return;
        }
        let init = self.watch_init.remove(&to.idx).expect("present");
        if e.conn(to).is_some() {
            let frame = messages::watchlist_events(
                init.online.iter().map(|u| &**u),
                init.offline.iter().map(|u| &**u),
            );
            e.send(to, frame);
            self.stats.watchlist_events += 1;
        }
    }

    /// A watched user changed state: tell these watchers on this core.
    pub(crate) fn on_watch_event(
        &mut self,
        e: &mut Net,
        to: &[ConnKey],
        user: &str,
        online: bool,
        frame: &Bytes,
    ) {
        for &key in to {
            if e.conn(key).is_none() {
                continue;
            }
            if let Some(init) = self.watch_init.get_mut(&key.idx).filter(|i| i.key == key) {
                // The initial state is still being gathered: it will say this.
                init.online.retain(|u| **u != *user);
                init.offline.retain(|u| **u != *user);
                if online { &mut init.online } else { &mut init.offline }.push(user.into());
                continue;
            }
            if e.push(key.idx, frame, None) {
                self.stats.watchlist_events += 1;
            }
        }
    }

    /// The connection is going away: stop watching its watchlist.
    pub(crate) fn stop_watching(&mut self, e: &mut Net, key: ConnKey, app: AppIdx) {
        self.watch_init.remove(&key.idx);
        let Some(list) = self.watchlists.remove(&key.idx) else { return };
        let watcher = self.socket_ref(e, key);
        for (owner, users) in by_owner(app, &list, e.settings().cores) {
            if owner == e.shard() {
                self.unwatch(app, watcher, &users);
            } else {
                e.send_to_peer(owner, PeerMsg::Unwatch { app, watcher, users });
            }
        }
    }

    // ---- the owner core's side ----

    fn entry(&mut self, app: AppIdx, user: &str) -> &mut Watched {
        let known = self.cluster.is_none();
        let table = &mut self.watched[app.index()];
        if !table.contains_key(user) {
            table.insert(user.into(), Watched { known, ..Watched::default() });
        }
        table.get_mut(user).expect("present")
    }

    fn forget_if_unused(&mut self, app: AppIdx, user: &str) {
        if self.watched[app.index()].get(user).is_some_and(Watched::unused) {
            self.watched[app.index()].remove(user);
        }
    }

    /// On the owner core: `from` signed in as `user`.
    pub(crate) fn online_add(&mut self, e: &mut Net, app: AppIdx, user: &str, from: SocketRef) {
        let shard = e.shard();
        let clustered = self.cluster.is_some();
        let w = self.entry(app, user);
        let first_here = w.sockets.is_empty();
        if !w.sockets.insert(from) || !first_here {
            return;
        }
        if clustered {
            let msg = ClusterOut::UserOnline { shard, app, user: user.into(), online: true };
            if self.cluster_send(msg).is_ok() {
                return; // Redis decides (`learn_online` continues).
            }
        }
        self.learn_online(e, app, user, true, None);
    }

    /// On the owner core: `from`, signed in as `user`, went.
    pub(crate) fn online_remove(&mut self, e: &mut Net, app: AppIdx, user: &str, from: SocketRef) {
        let shard = e.shard();
        let Some(w) = self.watched[app.index()].get_mut(user) else { return };
        if !w.sockets.remove(&from) || !w.sockets.is_empty() {
            return;
        }
        let msg = ClusterOut::UserOnline { shard, app, user: user.into(), online: false };
        if self.cluster.is_none() || self.cluster_send(msg).is_err() {
            self.learn_online(e, app, user, false, None);
        }
        self.forget_if_unused(app, user);
    }

    /// The user's state as the cluster ordered it (`seq`), or as this node decided (None).
    /// Older news than what the owner has is ignored.
    pub(crate) fn learn_online(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        user: &str,
        online: bool,
        seq: Option<u64>,
    ) {
        let Some(w) = self.watched[app.index()].get_mut(user) else { return };
        if let Some(seq) = seq {
            if seq < w.seq {
                return;
            }
            w.seq = seq;
        }
        if w.online != online {
            w.online = online;
            self.notify_watchers(e, app, user);
        }
    }

    /// The cluster's answer to a status question (None: Redis is unreachable; this node's view
    /// then stands).
    pub(crate) fn learn_status(
        &mut self,
        e: &mut Net,
        app: AppIdx,
        users: &[Box<str>],
        answer: Option<(u64, Vec<bool>)>,
    ) {
        for (i, user) in users.iter().enumerate() {
            let Some(w) = self.watched[app.index()].get_mut(&**user) else { continue };
            w.asking = false;
            let (online, seq) = match &answer {
                Some((seq, online)) => (online.get(i).copied().unwrap_or(false), Some(*seq)),
                None => (!w.sockets.is_empty(), None),
            };
            self.learn_online(e, app, user, online, seq);
            self.known(e, app, user);
        }
    }

    /// The user's state is known now: answer the watch requests that waited only for it.
    fn known(&mut self, e: &mut Net, app: AppIdx, user: &str) {
        let Some(w) = self.watched[app.index()].get_mut(user) else { return };
        if w.known {
            return;
        }
        w.known = true;
        for watcher in std::mem::take(&mut w.waits) {
            let Some(wait) = self.watch_waits.get_mut(&watcher) else { continue };
            wait.missing = wait.missing.saturating_sub(1);
            if wait.missing == 0 {
                let wait = self.watch_waits.remove(&watcher).expect("present");
                self.answer_watch(e, watcher, wait.app, wait.users);
            }
        }
    }

    /// On the owner core: `watcher` follows `users` (owned here).
    pub(crate) fn watch(&mut self, e: &mut Net, app: AppIdx, watcher: SocketRef, users: Vec<Box<str>>) {
        let mut ask = Vec::new();
        for u in &users {
            let w = self.entry(app, u);
            w.pending += 1;
            if !w.known {
                w.waits.push(watcher);
                if !w.asking {
                    w.asking = true;
                    ask.push(u.clone());
                }
            }
        }
        let table = &self.watched[app.index()];
        let missing = users.iter().filter(|u| table.get(&***u).is_some_and(|w| !w.known)).count();
        if missing == 0 {
            return self.answer_watch(e, watcher, app, users);
        }
        let deadline = e.now().saturating_add(QUESTION_TIMEOUT);
        self.watch_waits.insert(watcher, WatchWait { app, users, missing, deadline });
        if !ask.is_empty() {
            let msg = ClusterOut::UserStatus { shard: e.shard(), app, users: ask };
            if let Err(ClusterOut::UserStatus { users, .. }) = self.cluster_send(msg) {
                self.learn_status(e, app, &users, None);
            }
        }
    }

    /// Tells `watcher` the state of `users` and adds it to their watchers.
    fn answer_watch(&mut self, e: &mut Net, watcher: SocketRef, app: AppIdx, users: Vec<Box<str>>) {
        let (mut online, mut offline) = (Vec::new(), Vec::new());
        for u in users {
            let w = self.entry(app, &u);
            w.pending = w.pending.saturating_sub(1);
            w.watchers.insert(watcher);
            if w.online { &mut online } else { &mut offline }.push(u);
        }
        let msg = PeerMsg::Watching { to: watcher.key, online, offline };
        self.reply_to(e, watcher, msg);
    }

    /// On the owner core: `watcher` went; forget it (and its request, if still waiting).
    pub(crate) fn unwatch(&mut self, app: AppIdx, watcher: SocketRef, users: &[Box<str>]) {
        let waiting = self.watch_waits.remove(&watcher).is_some();
        for u in users {
            if let Some(w) = self.watched[app.index()].get_mut(&**u) {
                if waiting {
                    w.pending = w.pending.saturating_sub(1);
                    w.waits.retain(|s| *s != watcher);
                }
                w.watchers.remove(&watcher);
            }
            self.forget_if_unused(app, u);
        }
    }

    /// Tells the user's watchers (on every core of this node) its new state.
    fn notify_watchers(&mut self, e: &mut Net, app: AppIdx, user: &str) {
        let Some(w) = self.watched[app.index()].get(user) else { return };
        if w.watchers.is_empty() {
            return;
        }
        let online = w.online;
        let frame = if online {
            messages::watchlist_events([user], [])
        } else {
            messages::watchlist_events([], [user])
        };
        let mut by_core: BTreeMap<CoreId, Vec<ConnKey>> = BTreeMap::new();
        for s in &w.watchers {
            by_core.entry(s.shard).or_default().push(s.key);
        }
        for (core, to) in by_core {
            if core == e.shard() {
                self.on_watch_event(e, &to, user, online, &frame);
            } else {
                let msg = PeerMsg::WatchEvent { to, user: user.into(), online, frame: frame.clone() };
                e.send_to_peer(core, msg);
            }
        }
    }

    /// Second by second: users the cluster did not answer about in time are taken as this node
    /// sees them (which answers the watch requests waiting for them).
    pub(crate) fn expire_watches(&mut self, e: &mut Net) {
        if self.watch_waits.is_empty() {
            return;
        }
        let now = e.now();
        let late: Vec<(AppIdx, Vec<Box<str>>)> = self
            .watch_waits
            .values()
            .filter(|w| w.deadline <= now)
            .map(|w| (w.app, w.users.clone()))
            .collect();
        for (app, users) in late {
            for user in users {
                let Some(w) = self.watched[app.index()].get_mut(&*user) else { continue };
                if w.known {
                    continue;
                }
                self.stats.questions_expired += 1;
                w.asking = false;
                let online = !w.sockets.is_empty();
                self.learn_online(e, app, &user, online, None);
                self.known(e, app, &user);
            }
        }
    }

    /// After Redis came back: register this node's signed-in users again (first-node changes
    /// are published, so other nodes learn who is online).
    pub(crate) fn reregister_users(&self, shard: CoreId) -> Vec<ClusterOut> {
        let mut out = Vec::new();
        for app in self.apps.indexes() {
            for (user, w) in &self.watched[app.index()] {
                if !w.sockets.is_empty() {
                    out.push(ClusterOut::UserOnline { shard, app, user: user.clone(), online: true });
                }
            }
        }
        out
    }

    /// The bus may have missed changes (Redis restarted, or the subscription was re-made): ask
    /// the cluster again about every watched user; newer answers win as always.
    pub(crate) fn reask_watched(&mut self, shard: CoreId) -> Vec<ClusterOut> {
        let mut out = Vec::new();
        for app in self.apps.indexes() {
            let mut ask = Vec::new();
            for (user, w) in self.watched[app.index()].iter_mut() {
                if !w.watchers.is_empty() && !w.asking {
                    w.asking = true;
                    ask.push(user.clone());
                }
            }
            if !ask.is_empty() {
                out.push(ClusterOut::UserStatus { shard, app, users: ask });
            }
        }
        out
    }
}
