//! The Pusher HTTP API: `/apps/{app_id}/…`, every request signed (see `auth::verify_request`).
//! Success bodies are JSON; errors are plain text saying what to fix, with Pusher's statuses.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use super::apps::AppIdx;
use super::auth;
use super::conn_state::PusherConn;
use super::messages;
use super::names::{self, Kind};
use super::query::{ChannelQuery, Filter, Question, Reply};
use super::socket_id::SocketRef;
use super::{CACHE_TTL, Net, Pusher};
use crate::core::conn::ConnKey;
use crate::core::service::Outcome;
use crate::protocol::http::{self, Request};

type ApiOutcome = Outcome<PusherConn>;

/// Most events in one `batch_events` request.
pub(crate) const MAX_BATCH: usize = 10;

/// Most channels one event may go to.
pub(crate) const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Longest event name.
pub(crate) const MAX_EVENT_NAME: usize = 200;

pub(crate) fn json(status: u16, body: &str, keep_alive: bool) -> Bytes {
    http::response(status, &[], "application/json", body.as_bytes(), keep_alive)
}

/// An HTTP API failure: status and a message saying what to change.
pub(crate) struct ApiError(pub(crate) u16, pub(crate) String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(400, msg.into())
    }
}

/// The body of `POST /apps/{id}/events` (and one entry of `batch_events`).
#[derive(Debug, Deserialize)]
pub(crate) struct EventBody {
    pub(crate) name: Option<String>,
    pub(crate) data: Option<serde_json::Value>,
    pub(crate) channel: Option<String>,
    pub(crate) channels: Option<Vec<String>>,
    pub(crate) socket_id: Option<String>,
    pub(crate) info: Option<String>,
}

/// A validated event ready to publish.
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
    pub(crate) channels: Vec<String>,
    pub(crate) except: Option<SocketRef>,
    /// `info` asked: (user_count, subscription_count).
    pub(crate) info: Option<(bool, bool)>,
}

/// Parses an `info` list; only the attributes in `allowed` may appear.
fn parse_info(info: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let attrs: Vec<String> =
        info.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    for a in &attrs {
        if !allowed.contains(&a.as_str()) {
            return Err(ApiError::bad(format!("Unknown info attribute {a:?}: use {}", allowed.join(", "))));
        }
    }
    Ok(attrs)
}

impl Pusher {
    /// Handles a request under `/apps/` (or the Python SDK's `/users/…/terminate_connections`).
    pub(crate) fn http_api(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        req: &Request<'_>,
        body: &[u8],
    ) -> ApiOutcome {
        let keep_alive = req.keep_alive();
        let path = req.path();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // /users/{id}/terminate_connections (the Python SDK's path): the app comes from auth_key.
        let (app, rest): (Option<AppIdx>, &[&str]) = match segments.as_slice() {
            ["apps", id, rest @ ..] => (self.apps.by_id(id), rest),
            ["users", ..] => {
                let key_param = form_urlencoded::parse(req.query().as_bytes())
                    .find(|(k, _)| k == "auth_key")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                (self.apps.by_key(&key_param), &segments[..])
            }
            _ => (None, &[]),
        };
        let result = match app {
            None => Err(ApiError(404, "Unknown app: check the app id (or auth_key)".into())),
            Some(app) => self.api_checked(e, key, keep_alive, app, req, body, rest),
        };
        self.stats.count_api(match &result {
            Ok(Outcome::Respond(resp, _)) => status_of(resp),
            Ok(_) => 200,
            Err(ApiError(status, _)) => *status,
        });
        match result {
            Ok(outcome) => outcome,
            Err(ApiError(status, msg)) => {
                let extra: &[(&str, &str)] =
                    if matches!(status, 429 | 503) { &[("Retry-After", "1")] } else { &[] };
                Outcome::Respond(http::text(status, &msg, extra, keep_alive), keep_alive)
            }
        }
    }

    /// Checks the app, the rate limit and the signature, then routes.
    #[allow(clippy::too_many_arguments)]
    fn api_checked(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        req: &Request<'_>,
        body: &[u8],
        rest: &[&str],
    ) -> Result<ApiOutcome, ApiError> {
        let a = self.app(app);
        if !a.enabled {
            return Err(ApiError(403, "Application is disabled".into()));
        }
        let params =
            auth::verify_request(req.method, req.path(), req.query(), body, &a.key, &a.secret, e.unix_now())
                .map_err(|err| ApiError(err.status(), err.message()))?;
        self.api_rate_limit(e, app)?;
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let ok = |body: String| Ok(Outcome::Respond(json(200, &body, keep_alive), keep_alive));
        match (req.method, rest) {
            ("POST", ["events"]) => self.api_events(e, key, keep_alive, app, body),
            ("POST", ["batch_events"]) => self.api_batch(e, key, keep_alive, app, body),
            ("GET", ["channels"]) => {
                self.api_channels(e, key, keep_alive, app, param("filter_by_prefix"), param("info"))
            }
            ("GET", ["channels", name]) => self.api_channel(e, key, keep_alive, app, name, param("info")),
            ("GET", ["channels", name, "users"]) => self.api_users(e, key, keep_alive, app, name),
            ("POST", ["users", user, "terminate_connections"]) => {
                if !names::valid_user_id(user) {
                    return Err(ApiError::bad(format!("Invalid user id {user:?}")));
                }
                self.terminate_user(e, app, user);
                ok("{}".into())
            }
            (_, ["events" | "batch_events"]) | (_, ["users", _, "terminate_connections"]) => {
                Err(ApiError(405, format!("Use POST for {}", req.path())))
            }
            (_, ["channels", ..]) => Err(ApiError(405, format!("Use GET for {}", req.path()))),
            _ => Err(ApiError(404, format!("No such API endpoint: {} {}", req.method, req.path()))),
        }
    }

    /// Per app and core: at most ⌈limit ÷ cores⌉ requests each second (429 beyond).
    fn api_rate_limit(&mut self, e: &Net, app: AppIdx) -> Result<(), ApiError> {
        let limit = self.app(app).max_api_requests_per_second;
        if limit == 0 {
            return Ok(());
        }
        let per_core = limit.div_ceil(u32::from(e.settings().cores.max(1)));
        let now = e.unix_now();
        let window = &mut self.api_window[app.index()];
        if window.0 != now {
            *window = (now, 0);
        }
        if window.1 >= per_core {
            return Err(ApiError(
                429,
                format!("Over the HTTP API rate limit of {limit} requests per second"),
            ));
        }
        window.1 += 1;
        Ok(())
    }

    /// Validates one event against the app's limits.
    pub(crate) fn validate_event(&self, app: AppIdx, e: EventBody) -> Result<Event, ApiError> {
        let a = self.app(app);
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
        let info = match e.info.as_deref() {
            None => None,
            Some(i) => {
                let attrs = parse_info(i, &["user_count", "subscription_count"])?;
                let users = attrs.iter().any(|a| a == "user_count");
                if users && channels.iter().any(|c| names::classify(c).kind != Kind::Presence) {
                    return Err(ApiError::bad("info=user_count is only available for presence channels"));
                }
                Some((users, attrs.iter().any(|a| a == "subscription_count")))
            }
        };
        Ok(Event { name, data, channels, except, info })
    }

    /// Publishes a validated event to each of its channels (encoded once per channel).
    pub(crate) fn publish_event(&mut self, e: &mut Net, app: AppIdx, ev: &Event) {
        for channel in &ev.channels {
            let frame = messages::event(&ev.name, Some(channel), &ev.data);
            let cache = names::classify(channel).cache.then(|| ev.data.as_str().into());
            self.publish(e, app, channel, frame, ev.except, cache);
        }
    }

    /// The answer to a publish: once every core has queued the events (a round on the rings,
    /// which are FIFO), so that a publish the client makes after this answer reaches every
    /// subscriber after this one, whichever core takes it.
    fn published(&mut self, e: &mut Net, key: ConnKey, keep_alive: bool) -> ApiOutcome {
        if e.settings().cores == 1 {
            return Outcome::Respond(json(200, "{}", keep_alive), keep_alive);
        }
        self.ask_all(e, key, keep_alive, Question::Sync, Reply::Published)
    }

    /// Refuses new publishes while earlier ones still wait to be delivered beyond the bounds.
    fn check_backlog(&mut self, e: &Net) -> Result<(), ApiError> {
        if self.can_publish(e) {
            return Ok(());
        }
        self.stats.backpressure += 1;
        Err(ApiError(503, "The server is busy delivering earlier events: retry in a second".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn ask_channels(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        filter: Filter,
        members: bool,
        reply: Reply,
    ) -> ApiOutcome {
        let q = Arc::new(ChannelQuery { app, filter, members });
        self.ask_all(e, key, keep_alive, Question::Channels(q), reply)
    }

    fn api_events(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        body: &[u8],
    ) -> Result<ApiOutcome, ApiError> {
        let body: EventBody =
            serde_json::from_slice(body).map_err(|err| ApiError::bad(format!("Invalid JSON body: {err}")))?;
        let event = self.validate_event(app, body)?;
        self.check_backlog(e)?;
        self.publish_event(e, app, &event);
        match event.info {
            None => Ok(self.published(e, key, keep_alive)),
            Some((user_count, subscription_count)) => {
                let channels: Vec<Box<str>> = event.channels.iter().map(|c| c.as_str().into()).collect();
                let reply = Reply::EventInfo { channels: channels.clone(), user_count, subscription_count };
                Ok(self.ask_channels(e, key, keep_alive, app, Filter::Names(channels), false, reply))
            }
        }
    }

    fn api_batch(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        body: &[u8],
    ) -> Result<ApiOutcome, ApiError> {
        #[derive(Deserialize)]
        struct Batch {
            batch: Vec<EventBody>,
        }
        let b: Batch =
            serde_json::from_slice(body).map_err(|err| ApiError::bad(format!("Invalid JSON body: {err}")))?;
        if b.batch.len() > MAX_BATCH {
            return Err(ApiError::bad(format!("Cannot batch-send more than {MAX_BATCH} events at once")));
        }
        // Validate everything first: an invalid event fails the whole batch, nothing is sent.
        let events: Vec<Event> =
            b.batch.into_iter().map(|ev| self.validate_event(app, ev)).collect::<Result<_, _>>()?;
        if events.iter().any(|ev| ev.channels.len() != 1) {
            return Err(ApiError::bad("Each batch event names exactly one channel"));
        }
        self.check_backlog(e)?;
        for ev in &events {
            self.publish_event(e, app, ev);
        }
        if events.iter().all(|ev| ev.info.is_none()) {
            return Ok(self.published(e, key, keep_alive));
        }
        let wanted: Vec<Option<(Box<str>, bool, bool)>> =
            events.iter().map(|ev| ev.info.map(|(u, s)| (ev.channels[0].as_str().into(), u, s))).collect();
        let names: Vec<Box<str>> = wanted.iter().flatten().map(|(n, _, _)| n.clone()).collect();
        Ok(self.ask_channels(
            e,
            key,
            keep_alive,
            app,
            Filter::Names(names),
            false,
            Reply::BatchInfo { events: wanted },
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn api_channels(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        prefix: Option<&str>,
        info: Option<&str>,
    ) -> Result<ApiOutcome, ApiError> {
        let attrs = parse_info(info.unwrap_or(""), &["user_count", "subscription_count"])?;
        let user_count = attrs.iter().any(|a| a == "user_count");
        let prefix = prefix.unwrap_or("");
        if user_count && !prefix.starts_with("presence-") {
            return Err(ApiError::bad("info=user_count needs filter_by_prefix=presence-"));
        }
        let reply = Reply::ChannelList {
            user_count,
            subscription_count: attrs.iter().any(|a| a == "subscription_count"),
        };
        Ok(self.ask_channels(e, key, keep_alive, app, Filter::Prefix(prefix.into()), false, reply))
    }

    #[allow(clippy::too_many_arguments)]
    fn api_channel(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        name: &str,
        info: Option<&str>,
    ) -> Result<ApiOutcome, ApiError> {
        let max = self.app(app).max_channel_name_length;
        let class = names::validate(name, max).map_err(|e| ApiError::bad(e.message(max)))?;
        let attrs = parse_info(info.unwrap_or(""), &["user_count", "subscription_count", "cache"])?;
        let user_count = attrs.iter().any(|a| a == "user_count");
        if user_count && class.kind != Kind::Presence {
            return Err(ApiError::bad("info=user_count is only available for presence channels"));
        }
        let cache = if attrs.iter().any(|a| a == "cache") {
            if !class.cache {
                return Err(ApiError::bad("info=cache is only available for cache channels"));
            }
            // Every core keeps every cache channel's last event: answer from here.
            let now = e.now();
            Some(
                self.cache[app.index()]
                    .get(name)
                    .filter(|c| now.saturating_sub(c.at) < CACHE_TTL)
                    .map(|c| (c.data.clone(), CACHE_TTL - now.saturating_sub(c.at))),
            )
        } else {
            None
        };
        let reply = Reply::ChannelInfo {
            name: name.into(),
            user_count,
            subscription_count: attrs.iter().any(|a| a == "subscription_count"),
            cache,
        };
        Ok(self.ask_channels(e, key, keep_alive, app, Filter::Names(vec![name.into()]), false, reply))
    }

    fn api_users(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        keep_alive: bool,
        app: AppIdx,
        name: &str,
    ) -> Result<ApiOutcome, ApiError> {
        if names::classify(name).kind != Kind::Presence {
            return Err(ApiError::bad("The channel must be a presence channel"));
        }
        Ok(self.ask_channels(
            e,
            key,
            keep_alive,
            app,
            Filter::Names(vec![name.into()]),
            true,
            Reply::Users { name: name.into() },
        ))
    }
}

/// The status code of an encoded response.
fn status_of(resp: &Bytes) -> u16 {
    std::str::from_utf8(resp.get(9..12).unwrap_or(b"0")).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}
