//! Pusher protocol messages on the wire: what clients send (parsed without copying what the
//! server only relays) and what the server sends (encoded once into ready-to-send WebSocket
//! frames). Server→client `data` is a JSON-encoded string, except in `pusher:error` and
//! `pusher:subscription_error` where it is an object, as the protocol documents.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::frame::{self, Opcode};

/// A message from a client, borrowing from the received frame.
#[derive(Debug, Deserialize)]
pub struct ClientMessage<'a> {
    /// The event name.
    #[serde(borrow)]
    pub event: std::borrow::Cow<'a, str>,
    /// The channel, for client events.
    #[serde(borrow, default)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    /// `data`, unparsed.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// Parses a client message; None if it is not a Pusher event.
pub fn parse_client(text: &[u8]) -> Option<ClientMessage<'_>> {
    serde_json::from_slice(text).ok()
}

/// `data` of `pusher:subscribe`.
#[derive(Debug, Deserialize, Default)]
pub struct SubscribeData {
    /// The channel.
    pub channel: Option<String>,
    /// `key:signature` for private, encrypted and presence channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// The presence member, as JSON text.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `data` of `pusher:signin`.
#[derive(Debug, Deserialize, Default)]
pub struct SigninData {
    /// `key:signature` over the socket id and `user_data`.
    pub auth: Option<String>,
    /// The user, as JSON text.
    pub user_data: Option<String>,
}

/// Parses a `data` field that clients send either as an object or as a JSON string holding one.
pub fn parse_data<T: for<'de> Deserialize<'de> + Default>(data: Option<&RawValue>) -> Option<T> {
    let raw = data?.get();
    if raw.starts_with('"') {
        let inner: String = serde_json::from_str(raw).ok()?;
        serde_json::from_str(&inner).ok()
    } else {
        serde_json::from_str(raw).ok()
    }
}

/// A presence member as given in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id as a string (the membership key).
    pub id: String,
    /// The user id as the client sent it (a JSON string or number), echoed back.
    pub id_json: String,
    /// `user_info` as raw JSON, if any.
    pub info: Option<String>,
}

/// Why `channel_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberError {
    /// Not a member object (the reason says what is wrong).
    Invalid(&'static str),
    /// `user_info` is over the app's limit.
    InfoTooLarge,
    /// `user_id` is over 128 characters.
    IdTooLong,
}

/// Parses presence `channel_data`: `{"user_id": string|number, "user_info": any}`.
pub fn parse_member(channel_data: &str, max_info_bytes: usize) -> Result<Member, MemberError> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        user_info: Option<&'a RawValue>,
    }
    let raw: Raw = serde_json::from_str(channel_data)
        .map_err(|_| MemberError::Invalid("channel_data is not a JSON object"))?;
    let id_raw = raw.user_id.ok_or(MemberError::Invalid("channel_data has no user_id"))?;
    let value: serde_json::Value =
        serde_json::from_str(id_raw.get()).map_err(|_| MemberError::Invalid("bad user_id"))?;
    let (id, id_json) = match value {
        serde_json::Value::String(s) if !s.is_empty() => {
            (s.clone(), serde_json::to_string(&s).expect("a string"))
        }
        serde_json::Value::Number(n) => (n.to_string(), n.to_string()),
        _ => return Err(MemberError::Invalid("user_id must be a non-empty string or a number")),
    };
    if id.len() > 128 {
        return Err(MemberError::IdTooLong);
    }
    let info = raw.user_info.map(|r| r.get().to_string()).filter(|s| s != "null");
    if info.as_ref().is_some_and(|i| i.len() > max_info_bytes) {
        return Err(MemberError::InfoTooLarge);
    }
    Ok(Member { id, id_json, info })
}

/// The user signing in: `user_data` must be a JSON object with a non-empty string `id`.
pub fn parse_user_id(user_data: &str) -> Option<String> {
    parse_user(user_data).map(|u| u.id)
}

/// What `user_data` of a sign-in says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    /// The user id.
    pub id: String,
    /// `watchlist`: the user ids whose online status the user follows (None: not given;
    /// Some(Err) when it is not an array of strings).
    pub watchlist: Option<Result<Vec<String>, ()>>,
}

/// Parses `user_data`: a JSON object with a non-empty string `id` and an optional `watchlist`.
pub fn parse_user(user_data: &str) -> Option<SignedInUser> {
    #[derive(Deserialize)]
    struct User {
        id: Option<serde_json::Value>,
        #[serde(default)]
        watchlist: Option<serde_json::Value>,
    }
    let user: User = serde_json::from_str(user_data).ok()?;
    let id = match user.id? {
        serde_json::Value::String(s) if !s.is_empty() => s,
        _ => return None,
    };
    let watchlist = match user.watchlist {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(()),
                })
                .collect(),
        ),
        Some(_) => Some(Err(())),
    };
    Some(SignedInUser { id, watchlist })
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn text_frame(json: &[u8]) -> Bytes {
    frame::encode(Opcode::Text, json)
}

/// `{"event":E,"channel":C,"data":"D"}` with `data` JSON-encoded as a string.
pub fn event(event: &str, channel: Option<&str>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(40 + event.len() + channel.map_or(0, str::len) + data.len() * 11 / 10);
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, event);
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_str(&mut out, c);
    }
    out.extend_from_slice(b",\"data\":");
    push_str(&mut out, data);
    out.push(b'}');
    text_frame(&out)
}

/// A client event relayed verbatim: `data` exactly as the sender wrote it, plus `user_id` on
/// presence channels.
pub fn client_event(event: &str, channel: &str, data_json: &str, user_id_json: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(48 + event.len() + channel.len() + data_json.len());
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, event);
    out.extend_from_slice(b",\"channel\":");
    push_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data_json.as_bytes());
    if let Some(u) = user_id_json {
        out.extend_from_slice(b",\"user_id\":");
        out.extend_from_slice(u.as_bytes());
    }
    out.push(b'}');
    text_frame(&out)
}

/// `pusher:connection_established` with the socket id and the activity timeout.
pub fn connection_established(socket_id: &str, activity_timeout: u32) -> Bytes {
    let data = format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout}}}");
    event("pusher:connection_established", None, &data)
}

/// `pusher:error` with `data` as an object; `code` may be null for non-fatal errors.
pub fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"event\":\"pusher:error\",");
    if let Some(c) = channel {
        out.extend_from_slice(b"\"channel\":");
        push_str(&mut out, c);
        out.push(b',');
    }
    out.extend_from_slice(b"\"data\":{\"code\":");
    match code {
        Some(c) => out.extend_from_slice(c.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"message\":");
    push_str(&mut out, message);
    out.extend_from_slice(b"}}");
    text_frame(&out)
}

/// `pusher:subscription_error` for `channel`.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Bytes {
    let mut out = Vec::with_capacity(96 + channel.len() + error.len());
    out.extend_from_slice(b"{\"event\":\"pusher:subscription_error\",\"channel\":");
    push_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":{\"type\":");
    push_str(&mut out, kind);
    out.extend_from_slice(b",\"error\":");
    push_str(&mut out, error);
    out.extend_from_slice(format!(",\"status\":{status}}}}}").as_bytes());
    text_frame(&out)
}

/// `pusher_internal:subscription_succeeded` with `data` (a JSON object's text).
pub fn subscription_succeeded(channel: &str, data: &str) -> Bytes {
    event("pusher_internal:subscription_succeeded", Some(channel), data)
}

/// `pusher:pong`.
pub fn pong() -> Bytes {
    Bytes::from_static(PONG)
}

/// `pusher:ping`.
pub fn ping() -> Bytes {
    Bytes::from_static(PING)
}

static PONG: &[u8] = b"\x81\x23{\"event\":\"pusher:pong\",\"data\":\"{}\"}";
static PING: &[u8] = b"\x81\x23{\"event\":\"pusher:ping\",\"data\":\"{}\"}";

/// `pusher:cache_miss` for a cache channel with no recent event.
pub fn cache_miss(channel: &str) -> Bytes {
    let mut out = Vec::with_capacity(48 + channel.len());
    out.extend_from_slice(b"{\"event\":\"pusher:cache_miss\",\"channel\":");
    push_str(&mut out, channel);
    out.push(b'}');
    text_frame(&out)
}

/// `pusher:signin_success` echoing `user_data`.
pub fn signin_success(user_data: &str) -> Bytes {
    let mut data = Vec::with_capacity(16 + user_data.len());
    data.extend_from_slice(b"{\"user_data\":");
    push_str(&mut data, user_data);
    data.push(b'}');
    event("pusher:signin_success", None, std::str::from_utf8(&data).expect("JSON is UTF-8"))
}

/// `data` of `member_added`: `{"user_id":…,"user_info":…}`.
pub fn member_added(channel: &str, m: &Member) -> Bytes {
    let data = match &m.info {
        Some(info) => format!("{{\"user_id\":{},\"user_info\":{info}}}", m.id_json),
        None => format!("{{\"user_id\":{}}}", m.id_json),
    };
    event("pusher_internal:member_added", Some(channel), &data)
}

/// `pusher_internal:member_removed` for the user whose id's JSON form is `id_json`.
pub fn member_removed(channel: &str, id_json: &str) -> Bytes {
    event("pusher_internal:member_removed", Some(channel), &format!("{{\"user_id\":{id_json}}}"))
}

/// `pusher_internal:subscription_count` with the channel's subscriptions (all cores and nodes).
pub fn subscription_count(channel: &str, count: u64) -> Bytes {
    event("pusher_internal:subscription_count", Some(channel), &format!("{{\"subscription_count\":{count}}}"))
}

/// `pusher_internal:watchlist_events` with an `online` and an `offline` event for the users
/// given (an empty list is left out).
pub fn watchlist_events<'a>(
    online: impl IntoIterator<Item = &'a str>,
    offline: impl IntoIterator<Item = &'a str>,
) -> Bytes {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(b"{\"events\":[");
    let mut first_event = true;
    for (name, ids) in
        [("online", online.into_iter().collect::<Vec<_>>()), ("offline", offline.into_iter().collect())]
    {
        if ids.is_empty() {
            continue;
        }
        if !first_event {
            data.push(b',');
        }
        first_event = false;
        data.extend_from_slice(format!("{{\"name\":\"{name}\",\"user_ids\":[").as_bytes());
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                data.push(b',');
            }
            push_str(&mut data, id);
        }
        data.extend_from_slice(b"]}");
    }
    data.extend_from_slice(b"]}");
    event("pusher_internal:watchlist_events", None, std::str::from_utf8(&data).expect("JSON is UTF-8"))
}

/// `data` of a presence `subscription_succeeded`: `{"presence":{"ids":[…],"hash":{…},"count":N}}`.
pub fn presence_data<'a>(members: impl Iterator<Item = &'a Member>) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count = 0;
    for m in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        ids.push_str(&m.id_json);
        hash.push_str(&serde_json::to_string(&m.id).expect("a string"));
        hash.push(':');
        hash.push_str(m.info.as_deref().unwrap_or("null"));
        count += 1;
    }
    format!("{{\"presence\":{{\"ids\":{ids}],\"hash\":{hash}}},\"count\":{count}}}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(frame: &Bytes) -> serde_json::Value {
        let off = crate::protocol::frame::header_len(frame.len() - 2);
        serde_json::from_slice(&frame[off..]).unwrap()
    }

    #[test]
    fn static_ping_and_pong_are_well_formed_frames() {
        for f in [pong(), ping()] {
            assert_eq!(f[1] as usize, f.len() - 2);
            let v = json_of(&f);
            assert_eq!(v["data"], "{}");
        }
    }

    #[test]
    fn server_data_is_a_string_and_errors_are_objects() {
        let v = json_of(&connection_established("123.456", 120));
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "123.456");
        assert_eq!(data["activity_timeout"], 120);
        let v = json_of(&error(Some(4001), "App key x does not exist", None));
        assert_eq!(v["data"]["code"], 4001);
        let v = json_of(&error(None, "nope", Some("private-a")));
        assert!(v["data"]["code"].is_null());
        assert_eq!(v["channel"], "private-a");
        let v = json_of(&subscription_error("private-a", "AuthError", "bad", 401));
        assert_eq!(v["data"]["status"], 401);
    }

    #[test]
    fn events_escape_and_client_events_relay_verbatim() {
        let v = json_of(&event("my-event", Some("ch"), "{\"a\":\"\u{1F600}\\\"\"}"));
        assert_eq!(v["data"], "{\"a\":\"\u{1F600}\\\"\"}");
        let v = json_of(&client_event("client-x", "presence-a", r#"{"typing":true}"#, Some("\"7\"")));
        assert_eq!(v["data"]["typing"], true);
        assert_eq!(v["user_id"], "7");
    }

    #[test]
    fn presence_payload_shape() {
        let a = Member { id: "1".into(), id_json: "\"1\"".into(), info: Some(r#"{"name":"Ann"}"#.into()) };
        let b = Member { id: "2".into(), id_json: "2".into(), info: None };
        let data: serde_json::Value = serde_json::from_str(&presence_data([&a, &b].into_iter())).unwrap();
        assert_eq!(data["presence"]["count"], 2);
        assert_eq!(data["presence"]["ids"], serde_json::json!(["1", 2]));
        assert_eq!(data["presence"]["hash"]["1"]["name"], "Ann");
        assert!(data["presence"]["hash"]["2"].is_null());
    }

    #[test]
    fn members_are_validated() {
        let m = parse_member(r#"{"user_id":10,"user_info":{"name":"x"}}"#, 1024).unwrap();
        assert_eq!((m.id.as_str(), m.id_json.as_str()), ("10", "10"));
        assert!(parse_member(r#"{"user_info":{}}"#, 1024).is_err());
        assert!(parse_member(r#"{"user_id":""}"#, 1024).is_err());
        assert_eq!(
            parse_member(r#"{"user_id":"a","user_info":"xxxxxxxx"}"#, 4),
            Err(MemberError::InfoTooLarge)
        );
        assert_eq!(parse_user_id(r#"{"id":"12345"}"#).as_deref(), Some("12345"));
        assert_eq!(parse_user_id(r#"{"id":12345}"#), None);
    }

    #[test]
    fn watchlists_are_parsed_from_user_data() {
        let u = parse_user(r#"{"id":"a","watchlist":["b","c"],"user_info":{}}"#).unwrap();
        assert_eq!(u.watchlist, Some(Ok(vec!["b".to_string(), "c".to_string()])));
        assert_eq!(parse_user(r#"{"id":"a"}"#).unwrap().watchlist, None);
        assert_eq!(parse_user(r#"{"id":"a","watchlist":[1]}"#).unwrap().watchlist, Some(Err(())));
        assert_eq!(parse_user(r#"{"id":"a","watchlist":"b"}"#).unwrap().watchlist, Some(Err(())));
    }

    #[test]
    fn watchlist_and_count_events_have_the_shape_pusher_js_reads() {
        let v = json_of(&watchlist_events(["b", "c\""], ["d"]));
        assert_eq!(v["event"], "pusher_internal:watchlist_events");
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"events": [
                {"name": "online", "user_ids": ["b", "c\""]},
                {"name": "offline", "user_ids": ["d"]}
            ]})
        );
        let v = json_of(&watchlist_events([], ["d"]));
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["events"].as_array().unwrap().len(), 1);
        let v = json_of(&subscription_count("news", 3));
        assert_eq!(
            (v["event"].as_str(), v["channel"].as_str()),
            (Some("pusher_internal:subscription_count"), Some("news"))
        );
        assert_eq!(v["data"], "{\"subscription_count\":3}");
    }

    #[test]
    fn data_may_be_an_object_or_a_string() {
        let m = parse_client(br#"{"event":"pusher:subscribe","data":{"channel":"a","auth":""}}"#).unwrap();
        let d: SubscribeData = parse_data(m.data).unwrap();
        assert_eq!(d.channel.as_deref(), Some("a"));
        let m = parse_client(br#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#).unwrap();
        let d: SubscribeData = parse_data(m.data).unwrap();
        assert_eq!(d.channel.as_deref(), Some("b"));
    }
}
