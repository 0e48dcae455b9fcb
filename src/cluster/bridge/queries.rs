//! Channel queries across nodes: this node's cores answered; the other live nodes are asked on
//! the bus, and the cluster's presence counts (and members) come from Redis.

use std::collections::HashSet;
use std::time::Duration;

use super::super::bus::Bus;
use super::{Asking, Shared, con_of, liveness, publish_bus};
use crate::core::io::CoreId;
use crate::pusher::apps::AppIdx;
use crate::pusher::query::{Filter, Row, Rows};
use crate::pusher::socket_id::NodeId;
use crate::pusher::wire::ClusterIn;

/// How long a query waits for the other nodes' answers.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// Starts a cluster query: asks the other live nodes, answers after their replies or a timeout.
#[allow(clippy::too_many_arguments)]
pub(super) async fn ask(
    b: &Shared,
    shard: CoreId,
    id: u64,
    app: AppIdx,
    filter: Filter,
    members: bool,
    rows: Rows,
) {
    let Some(mut con) = con_of(b) else {
        b.borrow_mut().send_core(shard, ClusterIn::Answered { id, rows });
        return;
    };
    // Who must answer: the nodes alive now (not as of the last heartbeat).
    let alive = match liveness::alive_nodes(b, &mut con).await {
        Ok(alive) => alive,
        Err(e) => {
            b.borrow_mut().lost("SMEMBERS", &e);
            b.borrow_mut().send_core(shard, ClusterIn::Answered { id, rows });
            return;
        }
    };
    let (qid, msg, waiting) = {
        let mut br = b.borrow_mut();
        br.alive = alive;
        let qid = br.next_ask;
        br.next_ask += 1;
        let node = br.s.node;
        let (prefix, names) = match &filter {
            Filter::Prefix(p) => (Some(p.to_string()), None),
            Filter::Names(n) => (None, Some(n.iter().map(|s| s.to_string()).collect())),
        };
        let msg = Bus::Ask { node: node.0, id: qid, app: br.app_id(app).to_string(), prefix, names };
        let waiting: HashSet<NodeId> = br.alive.iter().copied().filter(|&n| n != node).collect();
        (qid, msg, waiting)
    };
    let no_one = waiting.is_empty();
    b.borrow_mut().asking.insert(qid, Asking { shard, id, app, filter, members, rows, waiting });
    if !no_one && publish_bus(b, &mut con, &msg).await {
        let b2 = b.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(ASK_TIMEOUT).await;
            finish(&b2, qid).await;
        });
        return;
    }
    finish(b, qid).await;
}

/// Node `node`'s subscriber counts for query `id`; finishes the query when it was the last.
pub(super) async fn answered(b: &Shared, node: NodeId, id: u64, rows: Vec<(String, u64)>) {
    let done = {
        let mut br = b.borrow_mut();
        match br.asking.get_mut(&id) {
            Some(a) => {
                for (name, subs) in rows {
                    a.rows.entry(name.into()).or_insert_with(Row::default).subscriptions += subs;
                }
                a.waiting.remove(&node);
                a.waiting.is_empty()
            }
            None => false,
        }
    };
    if done {
        finish(b, id).await;
    }
}

/// Completes a query: adds the cluster's presence counts (and members) from Redis.
async fn finish(b: &Shared, qid: u64) {
    let Some(mut a) = b.borrow_mut().asking.remove(&qid) else { return };
    if let Some(mut con) = con_of(b) {
        let app_id = b.borrow().app_id(a.app).to_string();
        let mut names: Vec<Box<str>> = a.rows.keys().cloned().collect();
        if let Filter::Names(list) = &a.filter {
            names.extend(list.iter().cloned());
        }
        names.sort();
        names.dedup();
        for name in names.into_iter().filter(|n| n.starts_with("presence-")) {
            let key = b.borrow().key(&format!("p:{app_id}:{name}:info"));
            let users: redis::RedisResult<Vec<String>> =
                redis::cmd("HKEYS").arg(&key).query_async(&mut con).await;
            match users {
                Ok(users) => {
                    let row = a.rows.entry(name).or_default();
                    row.users = Some(users.len() as u64);
                    if a.members {
                        row.members = Some(users.into_iter().map(Into::into).collect());
                    }
                }
                Err(e) => {
                    b.borrow_mut().lost("HKEYS", &e);
                    break;
                }
            }
        }
    }
    b.borrow_mut().send_core(a.shard, ClusterIn::Answered { id: a.id, rows: a.rows });
}
