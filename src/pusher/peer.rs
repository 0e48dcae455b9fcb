//! Messages between cores, carried by the SPSC mesh. Frames travel as shared `Bytes`, encoded
//! once by the core that produced them.

use std::sync::Arc;

use bytes::Bytes;

use super::messages::Member;
use super::query::{Answer, Question};
use super::socket_id::SocketRef;
use crate::core::conn::ConnKey;

/// An event to deliver to a channel's subscribers on every core (and node). Shared behind an
/// `Arc` by every core and the Redis bridge it is handed to.
#[derive(Debug)]
pub struct Publish {
    pub app: u32,
    pub channel: Box<str>,
    pub frame: Bytes,
    /// The connection not to deliver to (the sender, or the HTTP API's `socket_id`).
    pub except: Option<SocketRef>,
    /// For cache channels: the event's `data`; the event becomes the channel's last.
    pub cache: Option<Box<str>>,
}

#[derive(Debug)]
pub enum PeerMsg {
    Publish(Arc<Publish>),
    /// To the presence channel's owner: a connection joins as `member`.
    PresenceJoin {
        app: u32,
        channel: Box<str>,
        from: SocketRef,
        member: Member,
    },
    /// From the owner: the join's answer, a ready `subscription_succeeded` or an error frame.
    PresenceJoined {
        to: ConnKey,
        app: u32,
        channel: Box<str>,
        frame: Bytes,
        ok: bool,
    },
    /// To the owner: connection `from` of `user_id` left the channel.
    PresenceLeave {
        app: u32,
        channel: Box<str>,
        user_id: Box<str>,
        from: SocketRef,
    },
    /// Close every connection signed in as `user_id` (4009).
    TerminateUser {
        app: u32,
        user_id: Box<str>,
    },
    /// To the app's owner core: may one more connection of `app` open? (quota)
    AppReserve {
        app: u32,
        from: SocketRef,
    },
    AppReserved {
        to: ConnKey,
        app: u32,
        granted: bool,
    },
    AppRelease {
        app: u32,
    },
    /// To the channel's owner: core `shard` now has `count` subscribers (webhooks).
    Occupancy {
        app: u32,
        channel: Box<str>,
        shard: u32,
        count: u64,
    },
    /// Asks a core about its channels or figures; answered with `Answered`.
    Ask {
        id: u64,
        from: u32,
        question: Question,
    },
    Answered {
        id: u64,
        answer: Answer,
    },
}
