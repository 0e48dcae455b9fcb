//! Cluster-wide presence and occupancy in Redis, decided by atomic Lua scripts per user per
//! node: whether a join or leave is the first or last in the cluster, whether a channel became
//! occupied or vacated anywhere.

use redis::aio::MultiplexedConnection;

use super::super::scripts;
use super::{Bridge, Shared};
use crate::pusher::apps::AppIdx;
use crate::pusher::messages::Member;
use crate::pusher::socket_id::NodeId;

pub(super) fn presence_keys(b: &Bridge, app: &str, channel: &str, node: NodeId) -> [String; 4] {
    [
        b.key(&format!("p:{app}:{channel}:info")),
        b.key(&format!("p:{app}:{channel}:nodes")),
        b.key(&format!("p:{app}:{channel}:on")),
        b.key(&format!("node:{node}:p")),
    ]
}
pub(super) async fn join(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    channel: &str,
    m: &Member,
    max: usize,
) -> Option<(bool, bool, Vec<Member>)> {
    let (keys, node, app_id) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (presence_keys(&br, &app_id, channel, br.s.node), br.s.node, app_id)
    };
    // The stored value keeps the user id's JSON form and the info: "<id json>\n<info json>".
    let stored = format!("{}\n{}", m.id_json, m.info.as_deref().unwrap_or(""));
    let script = redis::Script::new(scripts::JOIN);
    let mut inv = script.prepare_invoke();
    for k in &keys {
        inv.key(k);
    }
    inv.arg(&m.id)
        .arg(node.0)
        .arg(stored)
        .arg(max.min(i64::MAX as usize) as i64)
        .arg(format!("{app_id}|{channel}|{}", m.id));
    match inv.invoke_async::<Vec<redis::Value>>(con).await {
        Ok(v) => {
            let int = |x: Option<&redis::Value>| matches!(x, Some(redis::Value::Int(1)));
            let (added, full) = (int(v.first()), int(v.get(1)));
            let strings: Vec<String> = v[2.min(v.len())..]
                .iter()
                .map(|x| redis::from_redis_value(x.clone()).unwrap_or_default())
                .collect();
            let members =
                strings.chunks(2).filter(|c| c.len() == 2).map(|c| member_from(&c[0], &c[1])).collect();
            Some((added, full, members))
        }
        Err(e) => {
            b.borrow_mut().lost("presence join", &e);
            None
        }
    }
}
pub(super) fn member_from(id: &str, stored: &str) -> Member {
    let (id_json, info) = stored.split_once('\n').unwrap_or((stored, ""));
    let id_json =
        if id_json.is_empty() { serde_json::to_string(id).expect("a string") } else { id_json.to_string() };
    Member { id: id.to_string(), id_json, info: (!info.is_empty()).then(|| info.to_string()) }
}
pub(super) async fn leave(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    channel: &str,
    user: &str,
    node: NodeId,
) -> Option<bool> {
    let (keys, app_id) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (presence_keys(&br, &app_id, channel, node), app_id)
    };
    leave_raw(b, con, &keys, user, node, &format!("{app_id}|{channel}|{user}")).await
}
pub(super) async fn leave_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    keys: &[String; 4],
    user: &str,
    node: NodeId,
    entry: &str,
) -> Option<bool> {
    let script = redis::Script::new(scripts::LEAVE);
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    inv.arg(user).arg(node.0).arg(entry);
    match inv.invoke_async::<i64>(con).await {
        Ok(n) => Some(n == 1),
        Err(e) => {
            b.borrow_mut().lost("presence leave", &e);
            None
        }
    }
}
pub(super) async fn occupy(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    channel: &str,
    node: NodeId,
    occupied: bool,
) -> Option<bool> {
    let (k1, k2, entry) = {
        let br = b.borrow();
        let app_id = br.app_id(app).to_string();
        (
            br.key(&format!("o:{app_id}:{channel}")),
            br.key(&format!("node:{node}:o")),
            format!("{app_id}|{channel}"),
        )
    };
    occupy_raw(b, con, &k1, &k2, node, occupied, &entry).await
}
pub(super) async fn occupy_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    k1: &str,
    k2: &str,
    node: NodeId,
    occupied: bool,
    entry: &str,
) -> Option<bool> {
    let script = redis::Script::new(scripts::OCCUPY);
    match script
        .key(k1)
        .key(k2)
        .arg(node.0)
        .arg(if occupied { "1" } else { "0" })
        .arg(entry)
        .invoke_async::<i64>(con)
        .await
    {
        Ok(n) => Some(n == 1),
        Err(e) => {
            b.borrow_mut().lost("occupancy", &e);
            None
        }
    }
}
