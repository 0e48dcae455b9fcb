//! The Pusher HTTP API: `/apps/{app_id}/…`, every request signed (see `auth::verify_request`).
//! Success bodies are JSON; errors are plain text saying what to fix, with Pusher's statuses.

use bytes::Bytes;
use serde::Deserialize;

use super::auth;
use super::messages;
use super::names::{self, Kind};
use super::socket_id::SocketRef;
use crate::core::Core;
use crate::core::conn::ConnKey;
use crate::protocol::http::{self, Request};

/// Most channels one event may go to.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 200;

pub(crate) fn json(status: u16, body: &str, keep_alive: bool) -> Bytes {
    http::response(status, &[], "application/json", body.as_bytes(), keep_alive)
}

/// An HTTP API failure: status and a message saying what to change.
pub(crate) struct ApiError(pub u16, pub String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(400, msg.into())
    }
}

type ApiResult = Result<String, ApiError>;

/// The body of `POST /apps/{id}/events` (and one entry of `batch_events`).
#[derive(Debug, Deserialize)]
pub(crate) struct EventBody {
    pub name: Option<String>,
    pub data: Option<serde_json::Value>,
    pub channel: Option<String>,
    pub channels: Option<Vec<String>>,
    pub socket_id: Option<String>,
    #[allow(dead_code)]
    pub info: Option<String>,
}

/// A validated event ready to publish.
pub(crate) struct Event {
    pub name: String,
    pub data: String,
    pub channels: Vec<String>,
    pub except: Option<SocketRef>,
}

impl Core {
    /// Handles a request under `/apps/` (or the Python SDK's `/users/…/terminate_connections`).
    pub(crate) fn http_api(
        &mut self,
        key: ConnKey,
        req: &Request<'_>,
        body: &[u8],
    ) -> crate::core::http_phase::Outcome {
        let _ = key;
        let keep_alive = req.keep_alive();
        let respond = |r: ApiResult| {
            let resp = match r {
                Ok(body) => json(200, &body, keep_alive),
                Err(ApiError(status, msg)) => http::text(status, &msg, &[], keep_alive),
            };
            crate::core::http_phase::Outcome::Respond(resp, keep_alive)
        };
        let path = req.path();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // /users/{id}/terminate_connections: the app comes from auth_key.
        let (app, rest): (Option<u16>, &[&str]) = match segments.as_slice() {
            ["apps", id, rest @ ..] => (self.pusher.app_by_id(id), rest),
            ["users", ..] => {
                let key_param = form_urlencoded::parse(req.query().as_bytes())
                    .find(|(k, _)| k == "auth_key")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                (self.pusher.app_by_key(&key_param), &segments[..])
            }
            _ => (None, &[]),
        };
        let Some(app) = app else {
            return respond(Err(ApiError(404, "Unknown app: check the app id (or auth_key)".into())));
        };
        let a = &self.pusher.apps[app as usize];
        if !a.enabled {
            return respond(Err(ApiError(403, "Application is disabled".into())));
        }
        if let Err(e) =
            auth::verify_request(req.method, path, req.query(), body, &a.key, &a.secret, self.unix_now)
        {
            return respond(Err(ApiError(e.status(), e.message())));
        }
        let result = match (req.method, rest) {
            ("POST", ["events"]) => self.api_events(app, body),
            (_, ["events"]) => Err(ApiError(405, "Use POST for /events".into())),
            _ => Err(ApiError(404, format!("No such API endpoint: {} {path}", req.method))),
        };
        respond(result)
    }

    /// Validates one event against the app's limits.
    pub(crate) fn validate_event(&self, app: u16, e: EventBody) -> Result<Event, ApiError> {
        let a = &self.pusher.apps[app as usize];
        let name = e.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad("The event needs a name"))?;
        if name.len() > MAX_EVENT_NAME {
            return Err(ApiError::bad(format!("Event name is longer than {MAX_EVENT_NAME} characters")));
        }
        let data = match e.data {
            Some(serde_json::Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => return Err(ApiError::bad("The event needs data (a string)")),
        };
        if data.len() > a.max_event_bytes {
            return Err(ApiError(
                413,
                format!("Event data is {} bytes: the limit is {} bytes", data.len(), a.max_event_bytes),
            ));
        }
        let channels = match (e.channels, e.channel) {
            (Some(list), None) => list,
            (None, Some(one)) => vec![one],
            (Some(_), Some(_)) => return Err(ApiError::bad("Give either channel or channels, not both")),
            (None, None) => return Err(ApiError::bad("The event needs channels (or channel)")),
        };
        if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_EVENT {
            return Err(ApiError::bad(format!("An event goes to 1 to {MAX_CHANNELS_PER_EVENT} channels")));
        }
        for c in &channels {
            let class = names::validate(c, a.max_channel_name_length).map_err(|err| {
                ApiError::bad(format!("Invalid channel {c:?}: {}", err.message(a.max_channel_name_length)))
            })?;
            if class.kind == Kind::Encrypted && channels.len() > 1 {
                return Err(ApiError::bad("An event to an encrypted channel must have that channel only"));
            }
        }
        let except = match e.socket_id {
            Some(s) => {
                Some(SocketRef::parse(&s).ok_or_else(|| ApiError::bad(format!("Invalid socket_id {s:?}")))?)
            }
            None => None,
        };
        Ok(Event { name, data, channels, except })
    }

    /// Publishes a validated event to each of its channels (encoded once per channel).
    pub(crate) fn publish_event(&mut self, app: u16, e: &Event) {
        for channel in &e.channels {
            let frame = messages::event(&e.name, Some(channel), &e.data);
            let cache =
                names::classify(channel).cache.then(|| (e.name.as_str().into(), e.data.as_str().into()));
            self.publish(app as u32, channel, frame, e.except, cache);
        }
    }

    fn api_events(&mut self, app: u16, body: &[u8]) -> ApiResult {
        let e: EventBody =
            serde_json::from_slice(body).map_err(|err| ApiError::bad(format!("Invalid JSON body: {err}")))?;
        let event = self.validate_event(app, e)?;
        self.publish_event(app, &event);
        Ok("{}".into())
    }
}
