//! Keeps the command connection up, this node's heartbeat fresh, and removes the presence,
//! occupancy, signed-in users and subscription counts of nodes whose heartbeat lapsed
//! (announcing the members and users who were only there, and the new counts).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::super::bus::Bus;
use super::{STATUS, Shared, con_of, counts, presence, publish_bus, users};
use crate::core::io::CoreId;
use crate::pusher::apps::AppIdx;
use crate::pusher::messages::{self, Member};
use crate::pusher::socket_id::NodeId;
use crate::pusher::wire::{ClusterIn, Publish};

pub(super) async fn run(b: Shared) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if con_of(&b).is_none() {
            let (url, ttl) = {
                let br = b.borrow();
                (br.s.url.clone(), br.s.ttl)
            };
            let connected = async {
                let client = redis::Client::open(url.as_str())?;
                client.get_multiplexed_async_connection_with_config(&connection_config(ttl)).await
            }
            .await;
            match connected {
                Ok(con) => {
                    backoff = Duration::from_millis(100);
                    let mut br = b.borrow_mut();
                    br.con = Some(con);
                    STATUS.connected.store(1, Ordering::Relaxed);
                    log::info!("Redis connected ({}): node {} joins the cluster", br.s.url, br.s.node);
                    if br.needs_resync {
                        br.needs_resync = false;
                        br.send_all(|| ClusterIn::Resync);
                    }
                }
                Err(e) => {
                    b.borrow_mut().warn("connect", &e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        heartbeat(&b).await;
        if con_of(&b).is_none() {
            continue; // lost during the heartbeat: reconnect now
        }
        let ttl = b.borrow().s.ttl;
        tokio::time::sleep(Duration::from_millis(ttl * 1000 / 4)).await;
    }
}

/// How long the command connection waits: for a reply, half the node TTL; to connect, a
/// quarter. redis-rs's defaults (0.5 s, 1 s) are shorter than a busy box's scheduling delays:
/// with dozens of nodes on a few cores, replies took longer during a connection ramp, and every
/// node dropped its connection (pausing cross-node delivery) and resynchronised, over and over.
/// A Redis that is down still fails at once (the connection is refused or reset).
pub(super) fn connection_config(ttl_secs: u64) -> redis::AsyncConnectionConfig {
    let ms = ttl_secs.saturating_mul(1000);
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis((ms / 2).max(1_000))))
        .set_connection_timeout(Some(Duration::from_millis((ms / 4).max(1_000))))
}

/// The registered nodes and which of them have a heartbeat key: one round trip for all of them,
/// however many nodes there are.
async fn registered_nodes(
    b: &Shared,
    con: &mut MultiplexedConnection,
) -> redis::RedisResult<Vec<(NodeId, bool)>> {
    let nodes_key = b.borrow().key("nodes");
    let nodes: Vec<u32> = redis::cmd("SMEMBERS").arg(&nodes_key).query_async(con).await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for n in &nodes {
        pipe.cmd("EXISTS").arg(b.borrow().key(&format!("node:{n}")));
    }
    let exists: Vec<bool> = pipe.query_async(con).await?;
    Ok(nodes.into_iter().map(NodeId).zip(exists).collect())
}

/// The registered nodes whose heartbeat key exists.
pub(super) async fn alive_nodes(
    b: &Shared,
    con: &mut MultiplexedConnection,
) -> redis::RedisResult<HashSet<NodeId>> {
    Ok(registered_nodes(b, con).await?.into_iter().filter(|&(_, alive)| alive).map(|(n, _)| n).collect())
}

/// Refreshes our heartbeat key, learns who is alive, and removes nodes whose key expired.
async fn heartbeat(b: &Shared) {
    let Some(mut con) = con_of(b) else { return };
    let (node, ttl, node_key, nodes_key) = {
        let br = b.borrow();
        (br.s.node, br.s.ttl, br.key(&format!("node:{}", br.s.node)), br.key("nodes"))
    };
    let r: redis::RedisResult<()> = async {
        // The key lives 3/4 of the TTL and is refreshed every 1/4: a dead node's key is gone at
        // most 3/4 TTL after its last refresh, and a survivor notices within 1/4 TTL more, so
        // its members are removed within the TTL.
        redis::pipe()
            .cmd("SET")
            .arg(&node_key)
            .arg("alive")
            .arg("PX")
            .arg(ttl.saturating_mul(750))
            .ignore()
            .cmd("SADD")
            .arg(&nodes_key)
            .arg(node.0)
            .ignore()
            .query_async::<()>(&mut con)
            .await?;
        let mut alive = HashSet::new();
        for (n, exists) in registered_nodes(b, &mut con).await? {
            if exists {
                alive.insert(n);
            } else {
                clean_up_dead(b, &mut con, n).await?;
            }
        }
        STATUS.nodes.store(alive.len() as u64, Ordering::Relaxed);
        b.borrow_mut().alive = alive;
        Ok(())
    }
    .await;
    if let Err(e) = r {
        b.borrow_mut().lost("heartbeat", &e);
    }
}

/// Removes a dead node's presence and occupancy (once, under a lock), announcing the members
/// who were only there and the channels only it occupied.
async fn clean_up_dead(b: &Shared, con: &mut MultiplexedConnection, dead: NodeId) -> redis::RedisResult<()> {
    let lock = b.borrow().key(&format!("cleanup:{dead}"));
    let got: Option<String> =
        redis::cmd("SET").arg(&lock).arg("1").arg("NX").arg("EX").arg(60).query_async(con).await?;
    if got.is_none() {
        return Ok(());
    }
    let (p_key, o_key, nodes_key) = {
        let br = b.borrow();
        (br.key(&format!("node:{dead}:p")), br.key(&format!("node:{dead}:o")), br.key("nodes"))
    };
    let entries: Vec<String> = redis::cmd("SMEMBERS").arg(&p_key).query_async(con).await?;
    let mut removed = 0;
    for entry in &entries {
        let mut parts = entry.splitn(3, '|');
        let (Some(app_id), Some(channel), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (keys, app) = {
            let br = b.borrow();
            (presence::presence_keys(&br, app_id, channel, dead), br.app_index(app_id))
        };
        let info_key = keys[0].clone();
        // The member's stored id form, read before the leave deletes it.
        let stored: Option<String> = redis::cmd("HGET").arg(&info_key).arg(user).query_async(con).await?;
        if presence::leave_raw(b, con, &keys, user, dead, entry).await == Some(true) {
            removed += 1;
            let Some(app) = app else { continue };
            let member = presence::member_from(user, stored.as_deref().unwrap_or(""));
            announce_removed(b, con, app, channel, &member).await;
        }
    }
    let occupied: Vec<String> = redis::cmd("SMEMBERS").arg(&o_key).query_async(con).await?;
    for entry in &occupied {
        let Some((app_id, channel)) = entry.split_once('|') else { continue };
        // Both lookups end their borrows here: a `Ref` taken in an `if let` scrutinee would live
        // through the body and make its `borrow_mut` panic.
        let (k1, app) = {
            let br = b.borrow();
            (br.key(&format!("o:{app_id}:{channel}")), br.app_index(app_id))
        };
        let vacated = presence::occupy_raw(b, con, &k1, &o_key, dead, false, entry).await == Some(true);
        if let (true, Some(app)) = (vacated, app) {
            let event = json!({"name": "channel_vacated", "channel": channel});
            b.borrow_mut().send_core(CoreId(0), ClusterIn::Webhook { app, event });
        }
    }
    // Its signed-in users (watchlists) and subscription counts: the scripts publish what
    // changes to every node.
    let (u_key, sc_key) = {
        let br = b.borrow();
        (br.key(&format!("node:{dead}:u")), br.key(&format!("node:{dead}:sc")))
    };
    let signed_in: Vec<String> = redis::cmd("SMEMBERS").arg(&u_key).query_async(con).await?;
    for entry in &signed_in {
        let Some((app_id, user)) = entry.rsplit_once('|') else { continue };
        users::report_raw(b, con, app_id, user, dead, false).await;
    }
    let counted: Vec<String> = redis::cmd("SMEMBERS").arg(&sc_key).query_async(con).await?;
    for entry in &counted {
        let Some((app_id, channel)) = entry.rsplit_once('|') else { continue };
        counts::report_raw(b, con, app_id, channel, dead, 0).await;
    }
    redis::cmd("DEL").arg(&p_key).arg(&o_key).arg(&u_key).arg(&sc_key).query_async::<i64>(con).await?;
    redis::cmd("SREM").arg(&nodes_key).arg(dead.0).query_async::<i64>(con).await?;
    log::info!("node {dead} stopped answering: removed its presence ({removed} members left the cluster)");
    Ok(())
}

/// `member_removed` for a member of a dead node: to this node's cores, to the other nodes, and
/// as a webhook (from this node only).
async fn announce_removed(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    channel: &str,
    member: &Member,
) {
    let frame: Bytes = messages::member_removed(channel, &member.id_json);
    let payload = String::from_utf8_lossy(crate::protocol::frame::payload_of(&frame)).into_owned();
    let msg = {
        let mut br = b.borrow_mut();
        let compressed = br.compress(&frame);
        let p =
            Arc::new(Publish { app, channel: channel.into(), frame, compressed, except: None, cache: None });
        br.send_all(|| ClusterIn::Publish(p.clone()));
        let event = json!({"name": "member_removed", "channel": channel, "user_id": member.id});
        br.send_core(CoreId(0), ClusterIn::Webhook { app, event });
        Bus::Publish {
            node: br.s.node.0,
            app: br.app_id(app).to_string(),
            channel: channel.to_string(),
            except: None,
            cache: None,
            payload,
        }
    };
    publish_bus(b, con, &msg).await;
}
