//! Messages between cores, carried by the SPSC mesh. Frames travel as shared `Bytes`, encoded
//! once by the core that produced them.

use std::sync::Arc;

use bytes::Bytes;

use super::apps::AppIdx;
use super::messages::Member;
use super::query::{Answer, Question};
use super::socket_id::SocketRef;
use super::wire::Publish;
use crate::core::conn::ConnKey;
use crate::core::io::CoreId;

#[derive(Debug)]
pub(crate) enum PeerMsg {
    Publish(Arc<Publish>),
    /// To the presence channel's owner: a connection joins as `member`.
    PresenceJoin {
        app: AppIdx,
        channel: Box<str>,
        from: SocketRef,
        member: Member,
    },
    /// From the owner: the join's answer, a ready `subscription_succeeded` or an error frame.
    PresenceJoined {
        to: ConnKey,
        app: AppIdx,
        channel: Box<str>,
        frame: Bytes,
        ok: bool,
    },
    /// To the owner: connection `from` of `user_id` left the channel.
    PresenceLeave {
        app: AppIdx,
        channel: Box<str>,
        user_id: Box<str>,
        from: SocketRef,
    },
    /// Close every connection signed in as `user_id` (4009).
    TerminateUser {
        app: AppIdx,
        user_id: Box<str>,
    },
    /// To the app's owner core: may one more connection of `app` open? (quota)
    AppReserve {
        app: AppIdx,
        from: SocketRef,
    },
    AppReserved {
        to: ConnKey,
        app: AppIdx,
        granted: bool,
    },
    AppRelease {
        app: AppIdx,
    },
    /// To the channel's owner: core `shard` now has `count` subscribers (webhooks).
    Occupancy {
        app: AppIdx,
        channel: Box<str>,
        shard: CoreId,
        count: u64,
    },
    /// To the user's owner core: connection `from` signed in as `user` (watchlist events).
    UserSignedIn {
        app: AppIdx,
        user: Box<str>,
        from: SocketRef,
    },
    /// To the user's owner core: connection `from`, signed in as `user`, went.
    UserSignedOut {
        app: AppIdx,
        user: Box<str>,
        from: SocketRef,
    },
    /// To the users' owner core: `watcher` follows `users`; answered with `Watching`.
    Watch {
        app: AppIdx,
        watcher: SocketRef,
        users: Vec<Box<str>>,
    },
    /// To the users' owner core: `watcher` went.
    Unwatch {
        app: AppIdx,
        watcher: SocketRef,
        users: Vec<Box<str>>,
    },
    /// From the owner core: which of the watched users are online.
    Watching {
        to: ConnKey,
        online: Vec<Box<str>>,
        offline: Vec<Box<str>>,
    },
    /// From the owner core: `user` went online or offline; `frame` says so to watchers `to`.
    WatchEvent {
        to: Vec<ConnKey>,
        user: Box<str>,
        online: bool,
        frame: Bytes,
    },
    /// Asks a core about its channels or figures; answered with `Answered`.
    Ask {
        id: u64,
        from: CoreId,
        question: Question,
    },
    Answered {
        id: u64,
        from: CoreId,
        answer: Answer,
    },
}

impl super::Pusher {
    /// A message from another core.
    pub(crate) fn on_peer(&mut self, e: &mut super::Net, msg: PeerMsg) {
        match msg {
            PeerMsg::Publish(p) => self.deliver_remote(e, &p),
            PeerMsg::PresenceJoin { app, channel, from, member } => {
                self.presence_join(e, app, &channel, from, member)
            }
            PeerMsg::PresenceJoined { to, app, channel, frame, ok } => {
                self.presence_joined(e, to, app, &channel, frame, ok)
            }
            PeerMsg::PresenceLeave { app, channel, user_id, from } => {
                self.presence_leave(e, app, &channel, &user_id, from)
            }
            PeerMsg::TerminateUser { app, user_id } => self.terminate_local(e, app, &user_id),
            PeerMsg::AppReserve { app, from } => {
                let granted = self.quota_take(app);
                self.reply_to(e, from, PeerMsg::AppReserved { to: from.key, app, granted });
            }
            PeerMsg::AppReserved { to, app, granted } => self.quota_answer(e, to, app, granted),
            PeerMsg::AppRelease { app } => self.release_quota(e, app),
            PeerMsg::Ask { id, from, question } => {
                let answer = self.answer(e, &question);
                let me = e.shard();
                e.send_to_peer(from, PeerMsg::Answered { id, from: me, answer });
            }
            PeerMsg::Answered { id, from, answer } => self.on_answer(e, id, from, answer),
            PeerMsg::Occupancy { app, channel, shard, count } => {
                self.occupancy(e, app, &channel, shard, count)
            }
            PeerMsg::UserSignedIn { app, user, from } => self.online_add(e, app, &user, from),
            PeerMsg::UserSignedOut { app, user, from } => self.online_remove(e, app, &user, from),
            PeerMsg::Watch { app, watcher, users } => self.watch(e, app, watcher, users),
            PeerMsg::Unwatch { app, watcher, users } => self.unwatch(app, watcher, &users),
            PeerMsg::Watching { to, online, offline } => self.on_watching(e, to, online, offline),
            PeerMsg::WatchEvent { to, user, online, frame } => {
                self.on_watch_event(e, &to, &user, online, &frame)
            }
        }
    }

    /// Sends a reply to the core of `to` (handled at once when that is this core).
    pub(crate) fn reply_to(&mut self, e: &mut super::Net, to: SocketRef, msg: PeerMsg) {
        if to.shard == e.shard() {
            self.on_peer(e, msg);
        } else {
            e.send_to_peer(to.shard, msg);
        }
    }
}
