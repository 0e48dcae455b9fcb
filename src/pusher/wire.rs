//! What crosses a ring between a core and a thread off the cores, or between nodes: publishes,
//! the Redis bridge's messages both ways, webhook events. Defined here, below `cluster/` and
//! `webhooks/`, so that both ends import them without a cycle.

use std::sync::Arc;

use bytes::Bytes;

use super::apps::AppIdx;
use super::messages::Member;
use super::query::{Filter, Rows};
use super::socket_id::{NodeId, SocketRef};
use crate::core::io::CoreId;
use crate::protocol::deflate::CompressedFrame;

/// An event to deliver to a channel's subscribers on every core (and node). Shared behind an
/// `Arc` by every core and the Redis bridge it is handed to.
#[derive(Debug)]
pub(crate) struct Publish {
    /// The app.
    pub(crate) app: AppIdx,
    /// The channel.
    pub(crate) channel: Box<str>,
    /// The whole WebSocket frame, encoded once.
    pub(crate) frame: Bytes,
    /// The same event compressed once (permessage-deflate), for the connections that
    /// negotiated it; None when compression is off or does not pay.
    pub(crate) compressed: Option<CompressedFrame>,
    /// The connection not to deliver to (the sender, or the HTTP API's `socket_id`).
    pub(crate) except: Option<SocketRef>,
    /// For cache channels: the event's `data`; the event becomes the channel's last.
    pub(crate) cache: Option<Box<str>>,
}

/// One webhook event from a core: the app and the event object, already JSON.
#[derive(Debug)]
pub(crate) struct Hook {
    /// The app whose URLs get it.
    pub(crate) app: AppIdx,
    /// The event object.
    pub(crate) event: String,
}

/// Messages a core sends to the Redis bridge.
#[derive(Debug)]
pub(crate) enum ClusterOut {
    /// An event that originated on this node: publish it to the other nodes.
    Publish(Arc<Publish>),
    /// From a presence channel's owner core: `member` has its first connection on this node
    /// (`node_new`) or another one; answer with `Joined` and the cluster's members.
    Join {
        /// The owner core.
        shard: CoreId,
        /// Names the join in the answer.
        token: u64,
        /// The app.
        app: AppIdx,
        /// The presence channel.
        channel: Box<str>,
        /// Who joins.
        member: Member,
        /// Whether this is the user's first connection on this node.
        node_new: bool,
        /// The app's member limit.
        max: usize,
    },
    /// From the owner core: the user's last connection on this node left; answer with `Left`.
    Leave {
        /// The owner core.
        shard: CoreId,
        /// The app.
        app: AppIdx,
        /// The presence channel.
        channel: Box<str>,
        /// Who left.
        member: Member,
    },
    /// From a channel's owner core: the channel became occupied or vacated on this node.
    Occupied {
        /// The owner core.
        shard: CoreId,
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: Box<str>,
        /// Occupied (true) or vacated.
        occupied: bool,
    },
    /// After a reconnect: a member of this node, re-registered silently.
    Rejoin {
        /// The app.
        app: AppIdx,
        /// The presence channel.
        channel: Box<str>,
        /// The member.
        member: Member,
    },
    /// After a reconnect: a channel this node occupies, re-registered silently.
    Reoccupy {
        /// The app.
        app: AppIdx,
        /// The channel.
        channel: Box<str>,
    },
    /// Close every connection signed in as `user_id`, on every node.
    Terminate {
        /// The app.
        app: AppIdx,
        /// The user.
        user_id: Box<str>,
    },
    /// A query answered by this node's cores (`rows`): add the other nodes' answers and the
    /// cluster's presence counts, then answer with `Answered`.
    Ask {
        /// The asking core.
        shard: CoreId,
        /// The core's query id.
        id: u64,
        /// The app.
        app: AppIdx,
        /// Which channels.
        filter: Filter,
        /// Include presence members.
        members: bool,
        /// This node's answer.
        rows: Rows,
    },
    /// This node's answer to another node's query.
    Answer {
        /// The asking node.
        to_node: NodeId,
        /// Its query id.
        id: u64,
        /// This node's rows.
        rows: Rows,
    },
    /// From a channel's owner core: the channel has `count` subscriptions on this node; Redis
    /// adds up the nodes and publishes `pusher_internal:subscription_count` to all of them.
    Count {
        /// The app.
        app: AppIdx,
        /// The channel (not presence).
        channel: Box<str>,
        /// Subscriptions on this node.
        count: u64,
    },
    /// From a user's owner core: the user's first connection on this node signed in (`online`)
    /// or the last one went; answer with `UserOnline`.
    UserOnline {
        /// The owner core.
        shard: CoreId,
        /// The app.
        app: AppIdx,
        /// The user.
        user: Box<str>,
        /// First connection (true) or last one gone.
        online: bool,
    },
    /// From a user's owner core: is each of `users` online in the cluster? Answer with
    /// `UserStatus`.
    UserStatus {
        /// The owner core.
        shard: CoreId,
        /// The app.
        app: AppIdx,
        /// The users.
        users: Vec<Box<str>>,
    },
    /// Debug builds only: make the bridge thread panic (fault injection).
    #[cfg(debug_assertions)]
    Panic,
}

/// Messages the Redis bridge sends to a core.
#[derive(Debug)]
pub(crate) enum ClusterIn {
    /// An event from another node: deliver to this core's subscribers.
    Publish(Arc<Publish>),
    /// The cluster's answer to a `Join`: whether the user is new to the cluster, whether the
    /// channel is full, and every member (None when Redis is unreachable).
    Joined {
        /// The join's token.
        token: u64,
        /// The user is new to the cluster.
        added: bool,
        /// The channel is full cluster-wide.
        full: bool,
        /// Every member of the channel in the cluster.
        members: Option<Vec<Member>>,
    },
    /// The cluster's answer to a `Leave`: whether the user left the cluster.
    Left {
        /// The app.
        app: AppIdx,
        /// The presence channel.
        channel: Box<str>,
        /// Who left.
        member: Member,
        /// The user has no connection left in the cluster.
        removed: bool,
    },
    /// A webhook event decided by the cluster (occupancy, a dead node's members).
    Webhook {
        /// The app.
        app: AppIdx,
        /// The event object.
        event: serde_json::Value,
    },
    /// Close this core's connections signed in as `user_id`.
    Terminate {
        /// The app.
        app: AppIdx,
        /// The user.
        user_id: Box<str>,
    },
    /// Another node asks (to core 0): answer with `ClusterOut::Answer`.
    Ask {
        /// The asking node.
        from_node: NodeId,
        /// Its query id.
        id: u64,
        /// The app.
        app: AppIdx,
        /// Which channels.
        filter: Filter,
        /// Include presence members.
        members: bool,
    },
    /// The cluster-wide rows for query `id`.
    Answered {
        /// The core's query id.
        id: u64,
        /// Every node's rows with the cluster's presence counts.
        rows: Rows,
    },
    /// Redis is back: send this core's presence and occupancy again (`Rejoin`, `Reoccupy`).
    Resync,
    /// The bridge (re)subscribed to the bus: ask again what bus messages may have said
    /// meanwhile (watched users, live counts).
    BusUp,
    /// To a user's owner core: the user is online or offline in the cluster, as of cluster
    /// sequence `seq` (None: Redis is unreachable and this node's view stands).
    UserOnline {
        /// The app.
        app: AppIdx,
        /// The user.
        user: Box<str>,
        /// Online anywhere.
        online: bool,
        /// Cluster order (a later state has a larger number).
        seq: Option<u64>,
    },
    /// The answer to a `UserStatus` question: the cluster sequence and, per user in order,
    /// whether it is online (None: Redis is unreachable).
    UserStatus {
        /// The app.
        app: AppIdx,
        /// The users asked about.
        users: Vec<Box<str>>,
        /// (sequence, online per user).
        answer: Option<(u64, Vec<bool>)>,
    },
}
