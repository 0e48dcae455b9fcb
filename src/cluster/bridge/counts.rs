//! Live subscription counts across nodes: each node's owner core reports its node's count of a
//! channel; the count script keeps the nodes' counts and publishes the cluster's total.

use redis::aio::MultiplexedConnection;

use super::super::scripts;
use super::Shared;
use crate::pusher::apps::AppIdx;
use crate::pusher::socket_id::NodeId;

/// Records `count` subscriptions of `channel` (of app id `app_id`) on `node`; Redis publishes
/// the total. Returns the total, or None (and the connection marked lost) on error.
pub(super) async fn report_raw(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app_id: &str,
    channel: &str,
    node: NodeId,
    count: u64,
) -> Option<u64> {
    let (k1, k2, bus) = {
        let br = b.borrow();
        (br.key(&format!("sc:{app_id}:{channel}")), br.key(&format!("node:{node}:sc")), br.key("bus"))
    };
    let script = redis::Script::new(scripts::COUNT);
    let result = script
        .key(k1)
        .key(k2)
        .key(bus)
        .arg(node.0)
        .arg(count)
        .arg(format!("{app_id}|{channel}"))
        .arg(app_id)
        .arg(channel)
        .invoke_async::<u64>(con)
        .await;
    match result {
        Ok(total) => Some(total),
        Err(e) => {
            b.borrow_mut().lost("subscription count", &e);
            None
        }
    }
}

/// This node's count of `channel`.
pub(super) async fn report(
    b: &Shared,
    con: &mut MultiplexedConnection,
    app: AppIdx,
    channel: &str,
    count: u64,
) -> Option<u64> {
    let (app_id, node) = {
        let br = b.borrow();
        (br.app_id(app).to_string(), br.s.node)
    };
    report_raw(b, con, &app_id, channel, node, count).await
}
