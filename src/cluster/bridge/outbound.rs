//! A core's messages to the bridge, handled in order per core: publishes go on the bus,
//! presence, occupancy, watchlist users and live counts through the Lua scripts, queries to
//! `queries`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::super::bus::Bus;
use super::super::ring::Rx;
use super::{STATUS, Shared, con_of, counts, presence, publish_bus, queries, users};
use crate::core::io::CoreId;
use crate::pusher::messages;
use crate::pusher::wire::{ClusterIn, ClusterOut, Publish};

/// Handles one core's messages in order.
pub(super) async fn core_loop(b: Shared, shard: CoreId, mut rx: Rx<ClusterOut>) {
    loop {
        let msg = rx.pop().await;
        handle(&b, shard, msg).await;
    }
}

async fn handle(b: &Shared, shard: CoreId, msg: ClusterOut) {
    match msg {
        ClusterOut::Publish(p) => publish(b, &p).await,
        ClusterOut::Join { shard: owner, token, app, channel, member, node_new, max } => {
            let answer = match con_of(b) {
                Some(mut con) => presence::join(b, &mut con, app, &channel, &member, max).await,
                None => None,
            };
            let msg = match answer {
                Some((added, full, members)) => {
                    ClusterIn::Joined { token, added, full, members: Some(members) }
                }
                // Unreachable: decide on this node alone.
                None => ClusterIn::Joined { token, added: node_new, full: false, members: None },
            };
            b.borrow_mut().send_core(owner, msg);
        }
        ClusterOut::Rejoin { app, channel, member } => {
            if let Some(mut con) = con_of(b) {
                let _ = presence::join(b, &mut con, app, &channel, &member, usize::MAX).await;
            }
        }
        ClusterOut::Leave { shard: owner, app, channel, member } => {
            let node = b.borrow().s.node;
            let removed = match con_of(b) {
                Some(mut con) => presence::leave(b, &mut con, app, &channel, &member.id, node).await,
                None => None,
            };
            // Unreachable or an error: this node's view (the user left here).
            let removed = removed.unwrap_or(true);
            b.borrow_mut().send_core(owner, ClusterIn::Left { app, channel, member, removed });
        }
        ClusterOut::Occupied { shard: owner, app, channel, occupied } => {
            let node = b.borrow().s.node;
            let changed = match con_of(b) {
                Some(mut con) => presence::occupy(b, &mut con, app, &channel, node, occupied).await,
                None => None,
            };
            if changed.unwrap_or(true) {
                let name = if occupied { "channel_occupied" } else { "channel_vacated" };
                let event = json!({"name": name, "channel": channel});
                b.borrow_mut().send_core(owner, ClusterIn::Webhook { app, event });
            }
        }
        ClusterOut::Reoccupy { app, channel } => {
            let node = b.borrow().s.node;
            if let Some(mut con) = con_of(b) {
                let _ = presence::occupy(b, &mut con, app, &channel, node, true).await;
            }
        }
        ClusterOut::Terminate { app, user_id } => {
            let Some(mut con) = con_of(b) else { return };
            let msg = {
                let br = b.borrow();
                Bus::Terminate {
                    node: br.s.node.0,
                    app: br.app_id(app).to_string(),
                    user: user_id.to_string(),
                }
            };
            publish_bus(b, &mut con, &msg).await;
        }
        ClusterOut::Ask { shard: asker, id, app, filter, members, rows } => {
            queries::ask(b, asker, id, app, filter, members, rows).await;
        }
        ClusterOut::Answer { to_node, id, rows } => {
            let Some(mut con) = con_of(b) else { return };
            let node = b.borrow().s.node;
            let rows = rows.into_iter().map(|(n, r)| (n.to_string(), r.subscriptions)).collect();
            publish_bus(b, &mut con, &Bus::Answer { node: node.0, to: to_node.0, id, rows }).await;
        }
        ClusterOut::Count { app, channel, count } => {
            let total = match con_of(b) {
                Some(mut con) => counts::report(b, &mut con, app, &channel, count).await,
                None => None,
            };
            // Redis publishes the total to every node. Unreachable: this node's subscribers get
            // this node's count.
            if total.is_none() && count > 0 {
                let frame = messages::subscription_count(&channel, count);
                let p =
                    Arc::new(Publish { app, channel, frame, compressed: None, except: None, cache: None });
                b.borrow_mut().send_all(|| ClusterIn::Publish(p.clone()));
            }
        }
        ClusterOut::UserOnline { shard: owner, app, user, online } => {
            let answer = match con_of(b) {
                Some(mut con) => users::report(b, &mut con, app, &user, online).await,
                None => None,
            };
            let msg = match answer {
                Some((now_online, seq)) => {
                    ClusterIn::UserOnline { app, user, online: now_online, seq: Some(seq) }
                }
                // Unreachable: this node's view (the user's first or last connection here).
                None => ClusterIn::UserOnline { app, user, online, seq: None },
            };
            b.borrow_mut().send_core(owner, msg);
        }
        ClusterOut::UserStatus { shard: owner, app, users } => {
            let answer = match con_of(b) {
                Some(mut con) => users::status(b, &mut con, app, &users).await,
                None => None,
            };
            b.borrow_mut().send_core(owner, ClusterIn::UserStatus { app, users, answer });
        }
        #[cfg(debug_assertions)]
        ClusterOut::Panic => panic!("fault injection: the Redis bridge panics (asked by core {shard})"),
    }
    let _ = shard;
}

/// An event that originated on this node goes to the other nodes.
pub(super) async fn publish(b: &Shared, p: &Publish) {
    let Some(mut con) = con_of(b) else {
        STATUS.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let payload = String::from_utf8_lossy(crate::protocol::frame::payload_of(&p.frame)).into_owned();
    let msg = {
        let br = b.borrow();
        Bus::Publish {
            node: br.s.node.0,
            app: br.app_id(p.app).to_string(),
            channel: p.channel.to_string(),
            except: p.except.map(|e| e.format()),
            cache: p.cache.as_deref().map(str::to_string),
            payload,
        }
    };
    if publish_bus(b, &mut con, &msg).await {
        STATUS.published.fetch_add(1, Ordering::Relaxed);
    } else {
        STATUS.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
