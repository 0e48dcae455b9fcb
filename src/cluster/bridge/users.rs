//! Watchlist online status across nodes: the user script decides when a user's first (last)
//! connection on a node makes the user online (offline) in the cluster, orders the change and
//! publishes it to every node; status questions read the state with its sequence.

use redis::aio::MultiplexedConnection;

use super::super::scripts;
use super::{Bridge, Shared};
use crate::pusher::apps::AppIdx;
use crate::pusher::socket_id::NodeId;

fn user_keys(b: &Bridge, app: &str, node: NodeId) -> [String; 5] {
    [
        b.key(&format!("u:{app}:nodes")),
        b.key(&format!("u:{app}:on")),
        b.key(&format!("node:{node}:u")),
        b.key(&format!("u:{app}:seq")),
        b.key("bus"),
    ]
}

/// Runs the user script for `user` of app id `app_id` on `node`; returns (online now,
/// sequence), or None (and the connection marked lost) on error.
pub(super) async fn report_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app_id: &str,
    user: &str,
    node: NodeId,
    online: bool,
) -> Option<(bool, u64)> {
    let keys = user_keys(&b.borrow(), app_id, node);
    let script = redis::Script::new(scripts::USER);
    let mut inv = script.prepare_invoke();
    for k in &keys {
        inv.key(k);
    }
    inv.arg(user).arg(node.0).arg(if online { "1" } else { "0" }).arg(format!("{app_id}|{user}")).arg(app_id);
    match inv.invoke_async::<(i64, String)>(con).await {
        Ok((now_online, seq)) => Some((now_online == 1, seq.parse().unwrap_or(0))),
        Err(e) => {
            b.borrow_mut().lost("watchlist user", &e);
            None
        }
    }
}

/// This node's first (`online`) or last connection of `user`.
pub(super) async fn report(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    user: &str,
    online: bool,
) -> Option<(bool, u64)> {
    let (app_id, node) = {
        let br = b.borrow();
        (br.app_id(app).to_string(), br.s.node)
    };
    report_raw(b, con, &app_id, user, node, online).await
}

/// Whether each of `users` is online, with the sequence that state is as of.
pub(super) async fn status(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    users: &[Box<str>],
) -> Option<(u64, Vec<bool>)> {
    let keys = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        [br.key(&format!("u:{app_id}:nodes")), br.key(&format!("u:{app_id}:seq"))]
    };
    let script = redis::Script::new(scripts::USER_STATUS);
    let mut inv = script.prepare_invoke();
    inv.key(&keys[0]).key(&keys[1]);
    for u in users {
        inv.arg(&**u);
    }
    match inv.invoke_async::<Vec<redis::Value>>(con).await {
        Ok(v) => {
            let seq = v.first().and_then(|x| redis::from_redis_value::<String>(x.clone()).ok());
            let seq = seq.and_then(|s| s.parse().ok()).unwrap_or(0);
            let online = v.iter().skip(1).map(|x| matches!(x, redis::Value::Int(1))).collect();
            Some((seq, online))
        }
        Err(e) => {
            b.borrow_mut().lost("watchlist status", &e);
            None
        }
    }
}
