//! The other nodes' messages on the bus (pub/sub): events to deliver here, terminations,
//! queries to answer and answers to our queries; and what Redis's scripts publish (watchlist
//! users going online or offline, live subscription counts), which every node applies.
//! Reconnects with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::StreamExt;

use super::super::bus::Bus;
use super::{STATUS, Shared, queries};
use crate::core::io::CoreId;
use crate::pusher::query::Filter;
use crate::pusher::socket_id::{NodeId, SocketRef};
use crate::pusher::wire::{ClusterIn, Publish};

/// Receives other nodes' messages; resubscribes with backoff when the connection drops.
pub(super) async fn subscriber(b: Shared) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (url, bus) = {
            let br = b.borrow();
            (br.s.url.clone(), br.key("bus"))
        };
        let pubsub = async {
            let client = redis::Client::open(url.as_str())?;
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&bus).await?;
            Ok::<_, redis::RedisError>(ps)
        }
        .await;
        let mut ps = match pubsub {
            Ok(ps) => ps,
            Err(e) => {
                b.borrow_mut().warn("SUBSCRIBE", &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // What was published before this subscription is lost to this node.
        b.borrow_mut().send_all(|| ClusterIn::BusUp);
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(bus) = serde_json::from_slice::<Bus>(msg.get_payload_bytes()) else { continue };
            on_bus(&b, bus).await;
        }
        log::warn!("Redis pub/sub connection closed: resubscribing");
    }
}

async fn on_bus(b: &Shared, msg: Bus) {
    if msg.origin().is_some_and(|n| NodeId(n) == b.borrow().s.node) {
        return; // our own publish: already delivered here
    }
    STATUS.received.fetch_add(1, Ordering::Relaxed);
    match msg {
        Bus::Publish { app, channel, except, cache, payload, .. } => {
            let mut br = b.borrow_mut();
            let Some(app) = br.app_index(&app) else { return };
            let frame =
                crate::protocol::frame::encode(crate::protocol::frame::Opcode::Text, payload.as_bytes());
            let except = except.as_deref().and_then(SocketRef::parse);
            let compressed = br.compress(&frame);
            let p = Arc::new(Publish {
                app,
                channel: channel.into(),
                frame,
                compressed,
                except,
                cache: cache.map(Into::into),
            });
            br.send_all(|| ClusterIn::Publish(p.clone()));
        }
        Bus::Terminate { app, user, .. } => {
            let mut br = b.borrow_mut();
            let Some(app) = br.app_index(&app) else { return };
            let user: Box<str> = user.into();
            br.send_all(|| ClusterIn::Terminate { app, user_id: user.clone() });
        }
        Bus::Ask { node, id, app, prefix, names } => {
            let mut br = b.borrow_mut();
            let Some(app) = br.app_index(&app) else { return };
            let filter = match (prefix, names) {
                (_, Some(n)) => Filter::Names(n.into_iter().map(Into::into).collect()),
                (p, None) => Filter::Prefix(p.unwrap_or_default().into()),
            };
            let msg = ClusterIn::Ask { from_node: NodeId(node), id, app, filter, members: false };
            br.send_core(CoreId(0), msg);
        }
        Bus::User { app, user, online, seq } => {
            let mut br = b.borrow_mut();
            let Some(app) = br.app_index(&app) else { return };
            let cores = u16::try_from(br.to_cores.len()).unwrap_or(u16::MAX);
            let owner = crate::pusher::user_owner(app, &user, cores);
            br.send_core(owner, ClusterIn::UserOnline { app, user: user.into(), online, seq: Some(seq) });
        }
        Bus::Count { app, channel, count } => {
            let mut br = b.borrow_mut();
            let Some(app) = br.app_index(&app) else { return };
            let frame = crate::pusher::messages::subscription_count(&channel, count);
            let p = Arc::new(Publish {
                app,
                channel: channel.into(),
                frame,
                compressed: None,
                except: None,
                cache: None,
            });
            br.send_all(|| ClusterIn::Publish(p.clone()));
        }
        Bus::Answer { node, to, id, rows } => {
            if NodeId(to) == b.borrow().s.node {
                queries::answered(b, NodeId(node), id, rows).await;
            }
        }
    }
}
