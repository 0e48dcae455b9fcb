//! The Pusher server's HTTP routes (the engine serves `/`, `/ready` and `/echo` itself):
//! WebSocket upgrades on `/app/{key}`, the HTTP API under `/apps/` (and the Python SDK's
//! `/users/…`), `/metrics`, and the live status page (`/status`, `/status.json`: always on the
//! metrics port, on the main port only with the configured token).

use super::conn_state::PusherConn;
use super::query::{Question, Reply};
use super::{Net, Pusher};
use crate::core::conn::ConnKey;
use crate::core::service::Outcome;
use crate::protocol::http::{self, Request};

/// The status page: self-contained HTML, CSS and JavaScript (no external assets) that polls
/// `status.json` once a second and draws small charts.
const STATUS_PAGE: &str = include_str!("status.html");

impl Pusher {
    /// Routes a request the engine does not serve itself.
    pub(crate) fn route(
        &mut self,
        e: &mut Net,
        key: ConnKey,
        req: &Request<'_>,
        body: &[u8],
        metrics_listener: bool,
    ) -> Outcome<PusherConn> {
        let keep_alive = req.keep_alive();
        let path = req.path();
        let not_found = |msg: &str| Outcome::Respond(http::text(404, msg, &[], keep_alive), keep_alive);
        if matches!(path, "/status" | "/status.json") && req.method == "GET" {
            if !metrics_listener && !self.status_allowed(req) {
                return not_found("not found");
            }
            if path == "/status" {
                let page =
                    http::response(200, &[], "text/html; charset=utf-8", STATUS_PAGE.as_bytes(), keep_alive);
                return Outcome::Respond(page, keep_alive);
            }
            let question = Question::Report { channel_hashes: true };
            return self.ask_all(e, key, keep_alive, question, Reply::Status);
        }
        if metrics_listener && path != "/metrics" {
            return not_found("only /metrics and /status are served on this port");
        }
        if let Some(app_key) = path.strip_prefix("/app/") {
            return Outcome::Upgrade(self.greeting(app_key, req));
        }
        if path.starts_with("/apps/") || path.starts_with("/users/") {
            return self.http_api(e, key, req, body);
        }
        if path == "/metrics" && req.method == "GET" {
            let question = Question::Report { channel_hashes: false };
            return self.ask_all(e, key, keep_alive, question, Reply::Metrics);
        }
        #[cfg(debug_assertions)]
        if self.faults
            && let Some(outcome) = self.fault(e, path, keep_alive)
        {
            return outcome;
        }
        not_found("not found")
    }

    /// Whether a request to the main port carries the status token (`?token=` or
    /// `Authorization: Bearer`); never without a configured token.
    fn status_allowed(&self, req: &Request<'_>) -> bool {
        if self.status_token.is_empty() {
            return false;
        }
        let bearer = req.header_str("Authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let query =
            form_urlencoded::parse(req.query().as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v);
        let given = bearer.map(str::to_string).or(query.map(|v| v.into_owned()));
        given.is_some_and(|t| super::auth::equal(t.as_bytes(), self.status_token.as_bytes()))
    }

    /// Debug builds started with CORECAST_DEBUG_FAULTS=1: `POST /debug/panic` panics this core,
    /// `POST /debug/panic-bridge` the Redis bridge thread (to test the panic policy).
    #[cfg(debug_assertions)]
    fn fault(&mut self, e: &Net, path: &str, keep_alive: bool) -> Option<Outcome<PusherConn>> {
        match path {
            "/debug/panic" => panic!("fault injection: core {} panics on request", e.shard()),
            "/debug/panic-bridge" => {
                let sent = self.cluster_send(super::wire::ClusterOut::Panic).is_ok();
                let status = if sent { 202 } else { 409 };
                Some(Outcome::Respond(http::text(status, "bridge fault", &[], keep_alive), keep_alive))
            }
            _ => None,
        }
    }
}
