//! The HTTP phase of a connection: request heads (and small bodies) until an upgrade, a
//! `Connection: close`, an error or the handshake timeout. The engine serves `/`, `/ready` and
//! `/echo` itself and hands every other request to the service.

use bytes::Bytes;

use super::Core;
use super::conn::{ConnKey, Inbound, Kind, Phase, flag};
use super::service::{Outcome, Service, Upgrade};
use crate::protocol::handshake;
use crate::protocol::http::{self, HeadError, Request};

/// What the engine itself makes of a request.
enum Route<X> {
    Service(Outcome<X>),
    Echo,
}

impl<S: Service> Core<S> {
    pub(super) fn on_http_bytes(&mut self, key: ConnKey, input: &mut [u8]) {
        let limit = http::MAX_HEAD.saturating_add(self.e.settings().max_body);
        let Some(conn) = self.e.conn_mut(key) else { return };
        let carried = match conn.inbound.take().map(|b| *b) {
            Some(Inbound::Head(h)) => Some(h),
            Some(Inbound::Frame(_)) | None => None,
        };
        if conn.has_deferred() {
            // A request waits for other cores: keep what follows (pipelined requests).
            let mut head = carried.unwrap_or_default();
            head.extend_from_slice(input);
            if head.len() > limit {
                let resp = http::text(431, "too much pipelined data", &[], false);
                return self.e.respond_and_close(key, resp);
            }
            conn.inbound = Some(Box::new(Inbound::Head(head)));
            return;
        }
        match carried {
            None => self.consume_requests(key, input),
            Some(mut carried) => {
                carried.extend_from_slice(input);
                self.consume_requests(key, &mut carried[..]);
            }
        }
    }

    /// Goes on with the pipelined input of a connection whose deferred response was sent.
    pub(super) fn resume_requests(&mut self, key: ConnKey) {
        let Some(conn) = self.e.conn_mut(key) else { return };
        if let Some(Inbound::Head(mut rest)) = conn.inbound.take().map(|b| *b) {
            self.consume_requests(key, &mut rest[..]);
        }
    }

    /// Handles every complete request in `data`; keeps an incomplete one for the next read.
    fn consume_requests(&mut self, key: ConnKey, data: &mut [u8]) {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.e.conn(key) else { return };
            if conn.phase != Phase::Http || conn.has(flag::CLOSE_AFTER_FLUSH) {
                return;
            }
            let rest = &data[pos..];
            let (req, total) = match self.next_request(key, rest) {
                Some(found) => found,
                None => return,
            };
            self.e.stats.http_requests += 1;
            let route = self.route(key, &req, &rest[req.head_len..total]);
            pos += total;
            match route {
                Route::Service(Outcome::Respond(resp, keep_alive)) => {
                    if !self.respond(key, resp, keep_alive) {
                        return;
                    }
                }
                Route::Service(Outcome::Deferred) => {
                    let Some(conn) = self.e.conn_mut(key) else { return };
                    conn.set_deferred(true);
                    if pos < data.len() {
                        conn.inbound = Some(Box::new(Inbound::Head(data[pos..].to_vec())));
                    }
                    return;
                }
                Route::Service(Outcome::Upgrade(up)) => {
                    if self.upgrade(key, &req, Kind::Service, Some(up)) && pos < data.len() {
                        self.on_ws_bytes(key, &mut data[pos..]);
                    }
                    return;
                }
                Route::Echo => {
                    if self.upgrade(key, &req, Kind::Echo, None) && pos < data.len() {
                        self.on_ws_bytes(key, &mut data[pos..]);
                    }
                    return;
                }
            }
        }
    }

    /// Parses the request at the start of `rest` with its body; None when incomplete (kept for
    /// the next read) or refused (answered and closing).
    fn next_request<'a>(&mut self, key: ConnKey, rest: &'a [u8]) -> Option<(Request<'a>, usize)> {
        let req = match http::parse(rest) {
            Ok(Some(req)) => req,
            Ok(None) => {
                self.keep_partial(key, rest, 0);
                return None;
            }
            Err(e) => {
                self.refuse(key, e);
                return None;
            }
        };
        let body_len = match req.content_length() {
            Ok(n) if n > self.e.settings().max_body => {
                let resp = http::text(413, "request body too large", &[], false);
                self.e.respond_and_close(key, resp);
                return None;
            }
            Ok(n) => n,
            Err(e) => {
                self.refuse(key, e);
                return None;
            }
        };
        let total = req.head_len.saturating_add(body_len);
        if rest.len() < total {
            // A client that sent only the head and `Expect: 100-continue` (curl, and so the PHP
            // SDK, for bodies over 1 KiB) waits for this before sending the body.
            if rest.len() == req.head_len && req.header_has_token("Expect", "100-continue") {
                self.e.send(key, Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
            }
            self.keep_partial(key, rest, total);
            return None;
        }
        Some((req, total))
    }

    /// Sends a response; false when the connection closes after it.
    fn respond(&mut self, key: ConnKey, resp: Bytes, keep_alive: bool) -> bool {
        if keep_alive && !self.e.is_draining() {
            self.e.send(key, resp);
            let now = self.e.now();
            if let Some(conn) = self.e.conn_mut(key) {
                conn.last_seen = now;
            }
            true
        } else {
            self.e.respond_and_close(key, resp);
            false
        }
    }

    fn keep_partial(&mut self, key: ConnKey, rest: &[u8], expected: usize) {
        let Some(conn) = self.e.conn_mut(key) else { return };
        let mut buf = Vec::with_capacity(expected.max(rest.len()).min(http::MAX_HEAD + 1024));
        buf.extend_from_slice(rest);
        conn.inbound = Some(Box::new(Inbound::Head(buf)));
    }

    fn refuse(&mut self, key: ConnKey, e: HeadError) {
        let msg = match e {
            HeadError::Malformed => "malformed HTTP request",
            HeadError::TooLarge => "request header fields too large",
            HeadError::LengthRequired => "a request body needs Content-Length",
        };
        self.e.respond_and_close(key, http::text(e.status(), msg, &[], false));
    }

    /// Routes one complete request: health and echo here, the rest to the service.
    fn route(&mut self, key: ConnKey, req: &Request<'_>, body: &[u8]) -> Route<S::Conn> {
        let keep_alive = req.keep_alive();
        let path = req.path();
        let metrics_listener = self.e.conn(key).is_some_and(|c| c.kind == Kind::MetricsHttp);
        // With --echo, /echo and a WebSocket upgrade on / (conformance tools that take only
        // host:port) are the echo endpoint; a plain GET / stays the health answer.
        let upgrade_on_root = path == "/" && req.header_has_token("Upgrade", "websocket");
        if self.e.settings().echo && !metrics_listener && (path == "/echo" || upgrade_on_root) {
            return Route::Echo;
        }
        let get = req.method == "GET" || req.method == "HEAD";
        let respond = |resp, keep_alive| Route::Service(Outcome::Respond(resp, keep_alive));
        match path {
            "/" if get => respond(http::text(200, "OK", &[], keep_alive), keep_alive),
            "/ready" if get => {
                if self.e.is_draining() {
                    respond(http::text(503, "draining", &[], false), false)
                } else {
                    respond(http::text(200, "OK", &[], keep_alive), keep_alive)
                }
            }
            "/" | "/ready" => respond(
                http::text(405, "method not allowed", &[("Allow", "GET, HEAD")], keep_alive),
                keep_alive,
            ),
            _ => Route::Service(self.s.request(&mut self.e, key, req, body, metrics_listener)),
        }
    }

    /// Validates an upgrade and applies admission control before any WebSocket state exists,
    /// then opens the WebSocket. False when the connection did not become a WebSocket.
    fn upgrade(&mut self, key: ConnKey, req: &Request<'_>, kind: Kind, up: Option<Upgrade<S::Conn>>) -> bool {
        let accept = match handshake::accept_key(req) {
            Ok(accept) => accept,
            Err(refusal) => {
                self.e.respond_and_close(key, refusal.response());
                return false;
            }
        };
        if self.e.is_draining() {
            self.e.stats.rejected_draining += 1;
            let resp = http::text(
                503,
                "server is shutting down: reconnect to another node",
                &[("Retry-After", "1")],
                false,
            );
            self.e.respond_and_close(key, resp);
            return false;
        }
        let (state, mut refusal) = match up {
            Some(up) => (up.state, up.refusal),
            None => (S::Conn::default(), None),
        };
        if self.e.ws_count() >= self.e.settings().max_connections {
            self.e.stats.rejected_full += 1;
            // A full core answers 503; a service may prefer to complete the handshake only to
            // send its own refusal (what its clients understand), without counting the
            // connection.
            let full = if kind == Kind::Service { self.e.policy.full.clone() } else { None };
            match full {
                Some(r) => refusal = Some(r),
                None => {
                    let resp = http::text(
                        503,
                        "server is at its connection limit: retry later",
                        &[("Retry-After", "1")],
                        false,
                    );
                    self.e.respond_and_close(key, resp);
                    return false;
                }
            }
        }
        let deflate = handshake::negotiate(req, self.e.settings().deflate);
        if deflate.is_some() {
            self.e.stats.deflate_negotiated += 1;
        }
        self.e.send(key, handshake::switching_protocols_with(&accept, deflate));
        self.open_ws(key, kind, state, refusal.is_none());
        if let Some(conn) = self.e.conn_mut(key) {
            conn.deflate = deflate;
        }
        if kind == Kind::Service {
            self.s.opened(&mut self.e, key, refusal);
        }
        true
    }

    /// Turns an HTTP connection into an open WebSocket.
    fn open_ws(&mut self, key: ConnKey, kind: Kind, state: S::Conn, counted: bool) {
        let now = self.e.now();
        let Some(conn) = self.e.conn_mut(key) else { return };
        conn.phase = Phase::Open;
        conn.kind = kind;
        conn.ext = state;
        conn.last_seen = now;
        if counted {
            conn.set(flag::COUNTED);
            self.e.ws_count += 1;
            self.e.stats.ws_opened += 1;
        }
        self.e.rearm_if_sooner(key);
    }
}
