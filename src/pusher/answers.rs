//! Answering and merging cross-core questions, and completing the HTTP requests that wait for
//! them (see `query`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::names::{self, Kind};
use super::owner_of;
use super::peer::PeerMsg;
use super::query::{
    self, Answer, ChannelQuery, CoreReport, Filter, Pending, Question, Reply, Row, Rows, Target,
};
use crate::core::Core;
use crate::core::conn::ConnKey;
use crate::core::http_phase::Outcome;

impl Core {
    /// Asks every core `question` for the HTTP request on `conn` (and, in a cluster, every node
    /// for channel questions). Responds at once when nobody else needs asking; otherwise the
    /// request waits (`Outcome::Deferred`).
    pub(crate) fn ask_all(
        &mut self,
        conn: ConnKey,
        keep_alive: bool,
        question: Question,
        reply: Reply,
    ) -> Outcome {
        match self.start_query(Target::Http { conn, keep_alive, reply }, question) {
            None => {
                self.pusher.waiting_conns.insert(conn.idx);
                Outcome::Deferred
            }
            Some(Pending { target: Target::Http { reply, .. }, rows, reports, .. }) => {
                Outcome::Respond(self.http_response(&reply, &rows, &reports, keep_alive), keep_alive)
            }
            Some(Pending { target: Target::Node { .. }, .. }) => unreachable!("the target is HTTP"),
        }
    }

    /// Asks the cores (and maybe the cluster); returns the query when it is already complete.
    fn start_query(&mut self, target: Target, question: Question) -> Option<Pending> {
        let id = self.pusher.next_query;
        self.pusher.next_query += 1;
        let channel_question = match &question {
            Question::Channels(q) => Some(Arc::clone(q)),
            Question::Report => None,
        };
        let mut pending = Pending {
            target,
            waiting: 0,
            rows: Rows::default(),
            reports: Vec::new(),
            question: channel_question,
            in_cluster: false,
        };
        let me = self.shard;
        for peer in (0..self.settings.shards).filter(|&p| p != me) {
            self.send_to_peer(peer, PeerMsg::Ask { id, from: me, question: question.clone() });
            pending.waiting += 1;
        }
        let local = self.answer(&question);
        absorb(&mut pending, local);
        if pending.waiting == 0 && !self.ask_cluster(id, &mut pending) {
            return Some(pending);
        }
        self.pusher.pending.insert(id, pending);
        None
    }

    /// Once the cores answered a channel question from an HTTP request: in a cluster, ask the
    /// other nodes (through the bridge). True when the query now waits for the cluster.
    fn ask_cluster(&mut self, id: u64, pending: &mut Pending) -> bool {
        let (Some(q), Target::Http { .. }) = (&pending.question, &pending.target) else { return false };
        if pending.in_cluster || self.cluster.is_none() {
            return false;
        }
        let msg = crate::cluster::ClusterOut::Ask {
            shard: self.shard,
            id,
            app: q.app as u16,
            filter: q.filter.clone(),
            members: q.members,
            rows: std::mem::take(&mut pending.rows),
        };
        match self.cluster_send(msg) {
            Ok(()) => {
                pending.in_cluster = true;
                pending.waiting = 1;
                true
            }
            Err(crate::cluster::ClusterOut::Ask { rows, .. }) => {
                pending.rows = rows;
                false
            }
            Err(_) => false,
        }
    }

    /// The cluster's rows for query `id` (they include this node's).
    pub(crate) fn cluster_answered(&mut self, id: u64, rows: Rows) {
        let Some(mut pending) = self.pusher.pending.remove(&id) else { return };
        pending.rows = rows;
        self.complete(pending);
    }

    /// Another node asks this node (on core 0) about its channels.
    pub(crate) fn answer_node(&mut self, node: u32, id: u64, app: u16, filter: Filter, members: bool) {
        let q = Arc::new(ChannelQuery { app: app as u32, filter, members });
        if let Some(pending) = self.start_query(Target::Node { node, id }, Question::Channels(q)) {
            self.complete(pending);
        }
    }

    fn reply_node(&mut self, node: u32, id: u64, rows: Rows) {
        let _ = self.cluster_send(crate::cluster::ClusterOut::Answer { to_node: node, id, rows });
    }

    /// This core's answer.
    pub(crate) fn answer(&self, question: &Question) -> Answer {
        match question {
            Question::Channels(q) => Answer::Channels(self.channel_rows(q)),
            Question::Report => Answer::Report(Box::new(self.report())),
        }
    }

    fn channel_rows(&self, q: &ChannelQuery) -> Rows {
        let mut rows = Rows::default();
        let owned = |name: &str| owner_of(q.app, name, self.settings.shards) == self.shard;
        let presence_row = |row: &mut Row, name: &str| {
            let members = self.pusher.presence.channel(q.app, name);
            row.users = Some(members.map_or(0, |c| c.members.len() as u64));
            if q.members {
                row.members = Some(members.map_or_else(Vec::new, |c| c.members.keys().cloned().collect()));
            }
        };
        match &q.filter {
            Filter::Prefix(prefix) => {
                for (_, ch) in self.pusher.channels.iter() {
                    if ch.app == q.app
                        && ch.name.starts_with(&**prefix)
                        && !ch.subscribers.is_empty()
                        && ch.class.kind != Kind::User
                    {
                        rows.entry(ch.name.clone()).or_default().subscriptions = ch.subscribers.len() as u64;
                    }
                }
                for (name, _) in self.pusher.presence.channels_of(q.app) {
                    if name.starts_with(&**prefix) {
                        presence_row(rows.entry(name.into()).or_default(), name);
                    }
                }
            }
            Filter::Names(list) => {
                for name in list {
                    let mut row = Row::default();
                    if let Some(id) = self.pusher.channels.lookup(q.app, name) {
                        row.subscriptions =
                            self.pusher.channels.get(id).map_or(0, |c| c.subscribers.len() as u64);
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

    fn report(&self) -> CoreReport {
        CoreReport {
            shard: self.shard,
            stats: self.stats.clone(),
            connections: self.conn_count() as u64,
            websockets: self.ws_count() as u64,
            channels: self.pusher.channels.len() as u64,
            presence_members: self.pusher.presence.member_count() as u64,
            ring_depth: self.outbox.iter().map(|q| q.len() as u64).sum(),
            app_connections: self.pusher.connections.clone(),
        }
    }

    /// Another core's answer to one of our questions.
    pub(crate) fn on_answer(&mut self, id: u64, answer: Answer) {
        let Some(pending) = self.pusher.pending.get_mut(&id) else { return };
        absorb(pending, answer);
        pending.waiting -= 1;
        if pending.waiting > 0 {
            return;
        }
        let mut pending = self.pusher.pending.remove(&id).expect("present");
        if self.ask_cluster(id, &mut pending) {
            self.pusher.pending.insert(id, pending);
        } else {
            self.complete(pending);
        }
    }

    /// Every answer is in: respond to the waiting request, or send the rows to the asking node.
    fn complete(&mut self, pending: Pending) {
        match pending.target {
            Target::Node { node, id } => self.reply_node(node, id, pending.rows),
            Target::Http { conn, keep_alive, reply } => {
                self.pusher.waiting_conns.remove(&conn.idx);
                if self.conn(conn).is_none() {
                    return;
                }
                let resp = self.http_response(&reply, &pending.rows, &pending.reports, keep_alive);
                self.finish_deferred(conn, resp, keep_alive);
            }
        }
    }

    fn http_response(&self, reply: &Reply, rows: &Rows, reports: &[CoreReport], keep_alive: bool) -> Bytes {
        let (body, content_type) = self.render(reply, rows, reports);
        crate::protocol::http::response(200, &[], content_type, body.as_bytes(), keep_alive)
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
                    .map(|e| match e {
                        Some((name, users, subs)) => count(name, rows.get(name), *users, *subs),
                        None => json!({}),
                    })
                    .collect();
                json!({ "batch": batch })
            }
            Reply::Metrics => {
                return (
                    crate::metrics::render(reports, &self.settings.apps, crate::metrics::process_rss()),
                    crate::metrics::CONTENT_TYPE,
                );
            }
        };
        (body.to_string(), "application/json")
    }
}

fn absorb(pending: &mut Pending, answer: Answer) {
    match answer {
        Answer::Channels(rows) => query::merge(&mut pending.rows, rows),
        Answer::Report(r) => pending.reports.push(*r),
    }
}
