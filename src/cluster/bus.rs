//! What nodes say to each other on the `P:bus` pub/sub channel (JSON). Apps are named by id, so
//! every node must configure the same apps.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub(crate) enum Bus {
    /// An event to deliver on every other node. `payload` is the event's JSON text (the frame
    /// without its WebSocket header); `except` a socket id.
    #[serde(rename = "pub")]
    Publish {
        node: u32,
        app: String,
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<String>,
        payload: String,
    },
    #[serde(rename = "term")]
    Terminate { node: u32, app: String, user: String },
    /// A query from `node`; every other node answers with `Answer`.
    #[serde(rename = "ask")]
    Ask {
        node: u32,
        id: u64,
        app: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        names: Option<Vec<String>>,
    },
    /// `node`'s subscriber counts, for query `id` of node `to`.
    #[serde(rename = "ans")]
    Answer { node: u32, to: u32, id: u64, rows: Vec<(String, u64)> },
    /// From Redis (the user script): `user` is online or offline in the cluster as of `seq`.
    #[serde(rename = "user")]
    User { app: String, user: String, online: bool, seq: u64 },
    /// From Redis (the count script): `channel` has `count` subscriptions in the cluster.
    #[serde(rename = "count")]
    Count { app: String, channel: String, count: u64 },
}

impl Bus {
    /// The node that sent it; None for what Redis publishes, which every node applies (its
    /// own changes included).
    pub(crate) fn origin(&self) -> Option<u32> {
        match self {
            Bus::Publish { node, .. }
            | Bus::Terminate { node, .. }
            | Bus::Ask { node, .. }
            | Bus::Answer { node, .. } => Some(*node),
            Bus::User { .. } | Bus::Count { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let msgs = [
            Bus::Publish {
                node: 7,
                app: "1".into(),
                channel: "c".into(),
                except: Some("7000.4294967296".into()),
                cache: None,
                payload: r#"{"event":"e","channel":"c","data":"{}"}"#.into(),
            },
            Bus::Terminate { node: 1, app: "1".into(), user: "u".into() },
            Bus::Ask { node: 2, id: 9, app: "1".into(), prefix: Some("presence-".into()), names: None },
            Bus::Answer { node: 3, to: 2, id: 9, rows: vec![("c".into(), 4)] },
            Bus::User { app: "1".into(), user: "u".into(), online: true, seq: 1_700_000_000_000_001 },
            Bus::Count { app: "1".into(), channel: "c".into(), count: 12 },
        ];
        for m in msgs {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Bus>(&text).unwrap(), m);
        }
    }

    #[test]
    fn reads_what_the_lua_scripts_publish() {
        let m: Bus = serde_json::from_str(
            r#"{"k":"user","app":"1","user":"a\/b","online":false,"seq":1700000000123456}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            Bus::User { app: "1".into(), user: "a/b".into(), online: false, seq: 1_700_000_000_123_456 }
        );
        let m: Bus = serde_json::from_str(r#"{"k":"count","app":"1","channel":"news","count":3}"#).unwrap();
        assert_eq!(m.origin(), None);
    }
}
