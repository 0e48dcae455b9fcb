//! Asking every core (and node) a question, answering other cores' questions, and completing
//! the HTTP requests that wait for the answers (see `query`). Every question has a deadline: a
//! request whose answers do not all arrive in time gets 503, and nothing waits forever.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::apps::AppIdx;
use super::conn_state::PusherConn;
use super::names::{self, Kind};
use super::peer::PeerMsg;
use super::query::{
    self, Answer, ChannelQuery, CoreReport, Filter, Pending, Question, Reply, Row, Rows, Target,
};
use super::socket_id::NodeId;
use super::wire::ClusterOut;
use super::{Net, Pusher, QUESTION_TIMEOUT, Rendering, owner_of};
use crate::core::conn::ConnKey;
use crate::core::io::CoreId;
use crate::core::service::Outcome;
use crate::protocol::http;

impl Pusher {
    /// Asks every core `question` for the HTTP request on `conn` (and, in a cluster, every node
    /// for channel questions). Responds at once when nobody else needs asking; otherwise the
    /// request waits (`Outcome::Deferred`).
    pub(crate) fn ask_all(
        &mut self,
        e: &mut Net,
        conn: ConnKey,
        keep_alive: bool,
        question: Question,
        reply: Reply,
    ) -> Outcome<PusherConn> {
        match self.start_query(e, Target::Http { conn, keep_alive, reply }, question) {
            None => Outcome::Deferred,
            Some(Pending { target: Target::Http { reply, .. }, rows, reports, .. }) => {
                Outcome::Respond(self.http_response(&reply, &rows, &reports, keep_alive), keep_alive)
            }
            Some(Pending { target: Target::Node { .. }, .. }) => unreachable!("the target is HTTP"),
        }
    }

    /// Asks the cores (and maybe the cluster); returns the query when it is already complete.
    fn start_query(&mut self, e: &mut Net, target: Target, question: Question) -> Option<Pending> {
        let id = self.queries.next;
        self.queries.next += 1;
        let channel_question = match &question {
            Question::Channels(q) => Some(Arc::clone(q)),
            Question::Report { .. } | Question::Sync => None,
        };
        let mut pending = Pending {
            target,
            waiting: Vec::new(),
            rows: Rows::default(),
            reports: Vec::new(),
            question: channel_question,
            in_cluster: false,
            deadline: e.now().saturating_add(QUESTION_TIMEOUT),
        };
        let me = e.shard();
        for peer in e.peers() {
            e.send_to_peer(peer, PeerMsg::Ask { id, from: me, question: question.clone() });
            pending.waiting.push(peer);
        }
        let local = self.answer(e, &question);
        absorb(&mut pending, local);
        if pending.waiting.is_empty() && !self.ask_cluster(e, id, &mut pending) {
            return Some(pending);
        }
        self.queries.pending.insert(id, pending);
        None
    }

    /// Once the cores answered a channel question from an HTTP request: in a cluster, ask the
    /// other nodes (through the bridge). True when the query now waits for the cluster.
    fn ask_cluster(&mut self, e: &Net, id: u64, pending: &mut Pending) -> bool {
        let (Some(q), Target::Http { .. }) = (&pending.question, &pending.target) else { return false };
        if pending.in_cluster || self.cluster.is_none() {
            return false;
        }
        let msg = ClusterOut::Ask {
            shard: e.shard(),
            id,
            app: q.app,
            filter: q.filter.clone(),
            members: q.members,
            rows: std::mem::take(&mut pending.rows),
        };
        match self.cluster_send(msg) {
            Ok(()) => {
                pending.in_cluster = true;
                true
            }
            Err(ClusterOut::Ask { rows, .. }) => {
                pending.rows = rows;
                false
            }
            Err(_) => false,
        }
    }

    /// The cluster's rows for query `id` (they include this node's).
    pub(crate) fn cluster_answered(&mut self, e: &mut Net, id: u64, rows: Rows) {
        let Some(mut pending) = self.queries.pending.remove(&id) else { return };
        pending.rows = rows;
        self.complete(e, pending);
    }

    /// Another node asks this node (on core 0) about its channels.
    pub(crate) fn answer_node(
        &mut self,
        e: &mut Net,
        node: NodeId,
        id: u64,
        app: AppIdx,
        filter: Filter,
        members: bool,
    ) {
        let q = Arc::new(ChannelQuery { app, filter, members });
        if let Some(pending) = self.start_query(e, Target::Node { node, id }, Question::Channels(q)) {
            self.complete(e, pending);
        }
    }

    fn reply_node(&mut self, node: NodeId, id: u64, rows: Rows) {
        if self.cluster_send(ClusterOut::Answer { to_node: node, id, rows }).is_err() {
            self.stats.cluster_dropped += 1;
        }
    }

    /// This core's answer.
    pub(crate) fn answer(&self, e: &Net, question: &Question) -> Answer {
        match question {
            Question::Channels(q) => Answer::Channels(self.channel_rows(e, q)),
            Question::Report { channel_hashes } => Answer::Report(Box::new(self.report(e, *channel_hashes))),
            Question::Sync => Answer::Synced,
        }
    }

    fn channel_rows(&self, e: &Net, q: &ChannelQuery) -> Rows {
        let mut rows = Rows::default();
        let owned = |name: &str| owner_of(q.app, name, e.settings().cores) == e.shard();
        let presence_row = |row: &mut Row, name: &str| {
            let members = self.presence.channel(q.app, name);
            row.users = Some(members.map_or(0, |c| c.members.len() as u64));
            if q.members {
                row.members = Some(members.map_or_else(Vec::new, |c| c.members.keys().cloned().collect()));
            }
        };
        match &q.filter {
            Filter::Prefix(prefix) => {
                for (_, ch) in self.channels.iter() {
                    if ch.app == q.app
                        && ch.name.starts_with(&**prefix)
                        && !ch.subscribers.is_empty()
                        && ch.class.kind != Kind::User
                    {
                        rows.entry(ch.name.clone()).or_default().subscriptions = ch.subscribers.len() as u64;
                    }
                }
                for (name, _) in self.presence.channels_of(q.app) {
                    if name.starts_with(&**prefix) {
                        presence_row(rows.entry(name.into()).or_default(), name);
                    }
                }
            }
            Filter::Names(list) => {
                for name in list {
                    let mut row = Row::default();
                    if let Some(id) = self.channels.lookup(q.app, name) {
                        row.subscriptions = self.channels.get(id).map_or(0, |c| c.subscribers.len() as u64);
                    }
                    if names::classify(name).kind == Kind::Presence && owned(name) {
                        presence_row(&mut row, name);
                    }
                    rows.insert(name.clone(), row);
                }
            }
        }
        rows
    }

    fn report(&self, e: &Net, channel_hashes: bool) -> CoreReport {
        let channel_hashes = if channel_hashes {
            use std::hash::{BuildHasher, Hash, Hasher};
            let hash = |app: super::apps::AppIdx, name: &str| {
                let mut h = rustc_hash::FxBuildHasher.build_hasher();
                app.hash(&mut h);
                name.hash(&mut h);
                h.finish()
            };
            self.channels
                .iter()
                .filter(|(_, c)| !c.subscribers.is_empty())
                .map(|(_, c)| hash(c.app, &c.name))
                .collect()
        } else {
            Vec::new()
        };
        CoreReport {
            shard: e.shard().0,
            engine: e.stats.clone(),
            pusher: self.stats.clone(),
            connections: e.conn_count() as u64,
            websockets: e.ws_count() as u64,
            channels: self.channels.len() as u64,
            presence_members: self.presence.member_count() as u64,
            ring_depth: e.outbox_len() as u64,
            queued_bytes: e.queued_bytes() as u64,
            dirty: e.dirty_count() as u64,
            conn_state_bytes: e.accounted_bytes() as u64,
            channel_hashes,
            app_connections: self.connections.clone(),
        }
    }

    /// Another core's answer to one of our questions.
    pub(crate) fn on_answer(&mut self, e: &mut Net, id: u64, from: CoreId, answer: Answer) {
        let Some(pending) = self.queries.pending.get_mut(&id) else { return };
        let Some(pos) = pending.waiting.iter().position(|&c| c == from) else { return };
        pending.waiting.swap_remove(pos);
        absorb(pending, answer);
        if !pending.waiting.is_empty() {
            return;
        }
        let mut pending = self.queries.pending.remove(&id).expect("present");
        if self.ask_cluster(e, id, &mut pending) {
            self.queries.pending.insert(id, pending);
        } else {
            self.complete(e, pending);
        }
    }

    /// Every answer is in: respond to the waiting request, or send the rows to the asking node.
    fn complete(&mut self, e: &mut Net, pending: Pending) {
        match pending.target {
            Target::Node { node, id } => self.reply_node(node, id, pending.rows),
            Target::Http { conn, keep_alive, reply } => {
                let resp = self.http_response(&reply, &pending.rows, &pending.reports, keep_alive);
                // A connection that went meanwhile is not answered (the key is generation-checked).
                e.finish_deferred(conn, resp, keep_alive);
            }
        }
    }

    /// Second by second: questions past their deadline are answered without the missing
    /// answers (503 for an HTTP request, the rows so far for another node), and presence joins
    /// the cluster did not answer are decided on this node.
    pub(crate) fn expire_questions(&mut self, e: &mut Net) {
        let now = e.now();
        let late: Vec<u64> =
            self.queries.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(&id, _)| id).collect();
        for id in late {
            let Some(p) = self.queries.pending.remove(&id) else { continue };
            self.stats.questions_expired += 1;
            match p.target {
                Target::Node { node, id } => self.reply_node(node, id, p.rows),
                // The events were handed to every core: answer as published even though a core
                // did not confirm it in time.
                Target::Http { conn, keep_alive, reply: Reply::Published } => {
                    log::warn!("a core did not confirm a publish within {QUESTION_TIMEOUT} s");
                    let resp = http::response(200, &[], "application/json", b"{}", keep_alive);
                    e.finish_deferred(conn, resp, keep_alive);
                }
                Target::Http { conn, keep_alive, .. } => {
                    let who = if p.in_cluster {
                        "the other nodes".to_string()
                    } else {
                        let cores: Vec<String> = p.waiting.iter().map(|c| c.to_string()).collect();
                        format!("core {}", cores.join(", "))
                    };
                    let msg = format!("No answer from {who} within {QUESTION_TIMEOUT} s: retry");
                    let resp = http::text(503, &msg, &[("Retry-After", "1")], keep_alive);
                    e.finish_deferred(conn, resp, keep_alive);
                }
            }
        }
        self.expire_joins(e);
    }

    fn http_response(&self, reply: &Reply, rows: &Rows, reports: &[CoreReport], keep_alive: bool) -> Bytes {
        let (body, content_type) = self.render(reply, rows, reports);
        http::response(200, &[], content_type, body.as_bytes(), keep_alive)
    }

    /// The response body of a completed request, and its content type.
    fn render(&self, reply: &Reply, rows: &Rows, reports: &[CoreReport]) -> (String, &'static str) {
        let none = Row::default();
        let count = |name: &str, row: Option<&Row>, users: bool, subs: bool| -> Value {
            let mut obj = Map::new();
            let row = row.unwrap_or(&none);
            if users && names::classify(name).kind == Kind::Presence {
                obj.insert("user_count".into(), json!(row.users.unwrap_or(0)));
            }
            if subs {
                obj.insert("subscription_count".into(), json!(row.subscriptions));
            }
            Value::Object(obj)
        };
        let body = match reply {
            Reply::ChannelList { user_count, subscription_count } => {
                let mut channels = Map::new();
                let mut occupied: Vec<(&Box<str>, &Row)> =
                    rows.iter().filter(|(_, r)| r.subscriptions > 0).collect();
                occupied.sort_by(|a, b| a.0.cmp(b.0));
                for (name, row) in occupied {
                    channels
                        .insert(name.to_string(), count(name, Some(row), *user_count, *subscription_count));
                }
                json!({ "channels": channels })
            }
            Reply::ChannelInfo { name, user_count, subscription_count, cache } => {
                let row = rows.get(name);
                let mut obj = Map::new();
                obj.insert("occupied".into(), json!(row.is_some_and(|r| r.subscriptions > 0)));
                if let Value::Object(counts) = count(name, row, *user_count, *subscription_count) {
                    obj.extend(counts);
                }
                if let Some(cached) = cache {
                    let v =
                        cached.as_ref().map_or(Value::Null, |(data, ttl)| json!({"data": data, "ttl": ttl}));
                    obj.insert("cache".into(), v);
                }
                Value::Object(obj)
            }
            Reply::Users { name } => {
                let members = rows.get(name).and_then(|r| r.members.as_deref()).unwrap_or_default();
                let mut ids: Vec<&str> = members.iter().map(|m| &**m).collect();
                ids.sort_unstable();
                json!({ "users": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>() })
            }
            Reply::EventInfo { channels, user_count, subscription_count } => {
                let mut out = Map::new();
                for name in channels {
                    out.insert(
                        name.to_string(),
                        count(name, rows.get(name), *user_count, *subscription_count),
                    );
                }
                json!({ "channels": out })
            }
            Reply::BatchInfo { events } => {
                let batch: Vec<Value> = events
                    .iter()
                    .map(|ev| match ev {
                        Some((name, users, subs)) => count(name, rows.get(name), *users, *subs),
                        None => json!({}),
                    })
                    .collect();
                json!({ "batch": batch })
            }
            Reply::Metrics => {
                return ((self.render)(reports, self.apps.all(), Rendering::Metrics), METRICS_CONTENT_TYPE);
            }
            Reply::Published => json!({}),
            Reply::Status => {
                return ((self.render)(reports, self.apps.all(), Rendering::Status), "application/json");
            }
        };
        (body.to_string(), "application/json")
    }
}

/// The content type of `/metrics` (OpenMetrics text).
pub(crate) const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn absorb(pending: &mut Pending, answer: Answer) {
    match answer {
        Answer::Channels(rows) => query::merge(&mut pending.rows, rows),
        Answer::Report(r) => pending.reports.push(*r),
        Answer::Synced => {}
    }
}
