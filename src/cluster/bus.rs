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
}

impl Bus {
    pub(crate) fn origin(&self) -> u32 {
        match self {
            Bus::Publish { node, .. }
            | Bus::Terminate { node, .. }
            | Bus::Ask { node, .. }
            | Bus::Answer { node, .. } => *node,
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
        ];
        for m in msgs {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Bus>(&text).unwrap(), m);
        }
    }
}
