//! The HTTP phase of a connection: request heads (and small bodies) until an upgrade, a
//! `Connection: close`, an error or the handshake timeout.

use bytes::Bytes;

use super::Core;
use super::conn::{ConnKey, Endpoint, Phase, flag};
use crate::protocol::handshake;
use crate::protocol::http::{self, HeadError, Request};

/// What a request leads to.
pub(crate) enum Outcome {
    /// Send this response; keep the connection if `keep_alive`.
    Respond(Bytes, bool),
    /// Complete a WebSocket handshake to this endpoint.
    Upgrade(Upgrade),
    /// The response needs other cores' answers; the connection waits (see `finish_deferred`).
    Deferred,
}

pub(crate) struct Upgrade {
    pub accept: String,
    pub endpoint: Endpoint,
    pub app: u16,
    /// A Pusher error to send right after the handshake, then close with its code.
    pub refusal: Option<(u16, String)>,
    /// Whether the connection counts against `max_connections` (refused ones do not).
    pub counted: bool,
}

impl Core {
    pub(super) fn on_http_bytes(&mut self, key: ConnKey, input: &mut [u8]) {
        let waiting = self.pusher.waiting_conns.contains(&key.idx);
        let limit = http::MAX_HEAD + self.settings.max_body;
        let Some(conn) = self.conn_mut(key) else { return };
        if waiting {
            // A request is waiting for other cores: keep what follows (pipelined requests).
            let head = conn.head.get_or_insert_with(Default::default);
            head.extend_from_slice(input);
            if head.len() > limit {
                let resp = http::text(431, "too much pipelined data", &[], false);
                self.respond_and_close(key, resp);
            }
            return;
        }
        match conn.head.take() {
            None => self.consume_requests(key, input),
            Some(mut carried) => {
                carried.extend_from_slice(input);
                self.consume_requests(key, &mut carried[..]);
            }
        }
    }

    /// Sends the response of a request that waited for other cores, then goes on with what the
    /// client sent meanwhile.
    pub(crate) fn finish_deferred(&mut self, key: ConnKey, resp: Bytes, keep_alive: bool) {
        let keep_alive = keep_alive && !self.draining;
        if !keep_alive {
            return self.respond_and_close(key, resp);
        }
        self.send(key, resp);
        let now = self.now;
        let Some(conn) = self.conn_mut(key) else { return };
        conn.last_seen = now;
        if let Some(mut rest) = conn.head.take() {
            self.consume_requests(key, &mut rest[..]);
        }
    }

    /// Handles every complete request in `data`; keeps an incomplete one for the next read.
    fn consume_requests(&mut self, key: ConnKey, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.conn(key) else { return };
            if conn.phase != Phase::Http || conn.has(flag::CLOSE_AFTER_FLUSH) {
                return;
            }
            let rest = &data[pos..];
            let req = match http::parse(rest) {
                Ok(Some(req)) => req,
                Ok(None) => return self.keep_partial(key, rest, 0),
                Err(e) => return self.refuse(key, e),
            };
            let body_len = match req.content_length() {
                Ok(n) if n > self.settings.max_body => {
                    return self
                        .respond_and_close(key, http::text(413, "request body too large", &[], false));
                }
                Ok(n) => n,
                Err(e) => return self.refuse(key, e),
            };
            let total = req.head_len + body_len;
            if rest.len() < total {
                // A client that sent only the head and `Expect: 100-continue` (curl, and so the
                // PHP SDK, for bodies over 1 KiB) waits for this before sending the body.
                if rest.len() == req.head_len && req.header_has_token("Expect", "100-continue") {
                    self.send(key, Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
                }
                return self.keep_partial(key, rest, total);
            }
            self.stats.http_requests += 1;
            let outcome = self.route(key, &req, &rest[req.head_len..total]);
            pos += total;
            match outcome {
                Outcome::Respond(resp, keep_alive) => {
                    let keep_alive = keep_alive && !self.draining;
                    if keep_alive {
                        self.send(key, resp);
                        let now = self.now;
                        if let Some(conn) = self.conn_mut(key) {
                            conn.last_seen = now;
                        }
                    } else {
                        self.respond_and_close(key, resp);
                        return;
                    }
                }
                Outcome::Deferred => {
                    if pos < data.len()
                        && let Some(conn) = self.conn_mut(key)
                    {
                        conn.head = Some(Box::new(data[pos..].to_vec()));
                    }
                    return;
                }
                Outcome::Upgrade(up) => {
                    self.send(key, handshake::switching_protocols(&up.accept));
                    let endpoint = up.endpoint;
                    self.open_ws(key, up.endpoint, up.app, up.counted);
                    if endpoint == Endpoint::Pusher {
                        self.pusher_open(key, up.refusal);
                    }
                    if pos < data.len() {
                        self.on_ws_bytes(key, &mut data[pos..]);
                    }
                    return;
                }
            }
        }
    }

    fn keep_partial(&mut self, key: ConnKey, rest: &[u8], expected: usize) {
        let Some(conn) = self.conn_mut(key) else { return };
        let mut buf = Vec::with_capacity(expected.max(rest.len()).min(http::MAX_HEAD + 1024));
        buf.extend_from_slice(rest);
        conn.head = Some(Box::new(buf));
    }

    fn refuse(&mut self, key: ConnKey, e: HeadError) {
        let msg = match e {
            HeadError::Malformed => "malformed HTTP request",
            HeadError::TooLarge => "request header fields too large",
            HeadError::LengthRequired => "a request body needs Content-Length",
        };
        self.respond_and_close(key, http::text(e.status(), msg, &[], false));
    }

    pub(super) fn respond_and_close(&mut self, key: ConnKey, resp: Bytes) {
        if resp.get(9..12).is_some_and(|s| s[0] >= b'4') {
            self.stats.http_errors += 1;
        }
        self.send(key, resp);
        self.close_after_flush(key);
    }

    /// Routes one complete request.
    fn route(&mut self, key: ConnKey, req: &Request<'_>, body: &[u8]) -> Outcome {
        let keep_alive = req.keep_alive();
        let path = req.path();
        let metrics_only = self.conn(key).is_some_and(|c| c.endpoint == Endpoint::Metrics);
        if metrics_only && !matches!(path, "/metrics" | "/" | "/ready") {
            return Outcome::Respond(
                http::text(404, "only /metrics is served on this port", &[], keep_alive),
                keep_alive,
            );
        }
        // With --echo, /echo and a WebSocket upgrade on / (conformance tools that take only
        // host:port) are the echo endpoint; a plain GET / stays the health answer.
        let upgrade_on_root = path == "/" && req.header_has_token("Upgrade", "websocket");
        if self.settings.echo && (path == "/echo" || upgrade_on_root) {
            return self.upgrade(req, Endpoint::Echo, 0, None);
        }
        if let Some(app_key) = path.strip_prefix("/app/") {
            let (app, refusal) = self.pusher_greeting(app_key, req.query());
            return self.upgrade(req, Endpoint::Pusher, app, refusal);
        }
        if path.starts_with("/apps/") || path.starts_with("/users/") {
            return self.http_api(key, req, body);
        }
        if path == "/metrics" && req.method == "GET" {
            use crate::pusher::query::{Question, Reply};
            return self.ask_all(key, keep_alive, Question::Report, Reply::Metrics);
        }
        let get = req.method == "GET" || req.method == "HEAD";
        match path {
            "/" if get => Outcome::Respond(http::text(200, "OK", &[], keep_alive), keep_alive),
            "/ready" if get => {
                if self.draining {
                    Outcome::Respond(http::text(503, "draining", &[], false), false)
                } else {
                    Outcome::Respond(http::text(200, "OK", &[], keep_alive), keep_alive)
                }
            }
            "/" | "/ready" => Outcome::Respond(
                http::text(405, "method not allowed", &[("Allow", "GET, HEAD")], keep_alive),
                keep_alive,
            ),
            _ => Outcome::Respond(http::text(404, "not found", &[], keep_alive), keep_alive),
        }
    }

    /// Validates an upgrade and applies admission control before any WebSocket state exists.
    /// A full core answers 503; on the Pusher endpoint it completes the handshake only to send
    /// `pusher:error` 4100 and close (what Pusher clients understand), without counting the
    /// connection or allocating WebSocket state for it.
    fn upgrade(
        &mut self,
        req: &Request<'_>,
        endpoint: Endpoint,
        app: u16,
        refusal: Option<(u16, String)>,
    ) -> Outcome {
        let accept = match handshake::accept_key(req) {
            Ok(accept) => accept,
            Err(refusal) => return Outcome::Respond(refusal.response(), false),
        };
        if self.draining {
            self.stats.rejected_draining += 1;
            return Outcome::Respond(
                http::text(
                    503,
                    "server is shutting down: reconnect to another node",
                    &[("Retry-After", "1")],
                    false,
                ),
                false,
            );
        }
        if self.ws_count >= self.settings.max_connections {
            self.stats.rejected_full += 1;
            if endpoint != Endpoint::Pusher {
                return Outcome::Respond(
                    http::text(
                        503,
                        "server is at its connection limit: retry later",
                        &[("Retry-After", "1")],
                        false,
                    ),
                    false,
                );
            }
            let refusal = Some((4100, "Over capacity: the server is at its connection limit".to_string()));
            return Outcome::Upgrade(Upgrade { accept, endpoint, app, refusal, counted: false });
        }
        let counted = refusal.is_none();
        Outcome::Upgrade(Upgrade { accept, endpoint, app, refusal, counted })
    }

    /// Turns an HTTP connection into an open WebSocket.
    fn open_ws(&mut self, key: ConnKey, endpoint: Endpoint, app: u16, counted: bool) {
        let now = self.now;
        let Some(conn) = self.conn_mut(key) else { return };
        conn.phase = Phase::Open;
        conn.endpoint = endpoint;
        conn.app = app;
        conn.last_seen = now;
        if counted {
            conn.set(flag::COUNTED);
            self.ws_count += 1;
            self.stats.ws_opened += 1;
        }
        self.rearm_if_sooner(key);
    }
}
