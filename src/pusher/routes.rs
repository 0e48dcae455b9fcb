//! The Pusher server's HTTP routes (the engine serves `/`, `/ready` and `/echo` itself):
//! WebSocket upgrades on `/app/{key}`, the HTTP API under `/apps/` (and the Python SDK's
//! `/users/…`), and `/metrics`.

use super::conn_state::PusherConn;
use super::query::{Question, Reply};
use super::{Net, Pusher};
use crate::core::conn::ConnKey;
use crate::core::service::Outcome;
use crate::protocol::http::{self, Request};

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
        if metrics_listener && path != "/metrics" {
            return not_found("only /metrics is served on this port");
        }
        if let Some(app_key) = path.strip_prefix("/app/") {
            return Outcome::Upgrade(self.greeting(app_key, req));
        }
        if path.starts_with("/apps/") || path.starts_with("/users/") {
            return self.http_api(e, key, req, body);
        }
        if path == "/metrics" && req.method == "GET" {
            return self.ask_all(e, key, keep_alive, Question::Report, Reply::Metrics);
        }
        #[cfg(debug_assertions)]
        if self.faults
            && let Some(outcome) = self.fault(e, path, keep_alive)
        {
            return outcome;
        }
        not_found("not found")
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
