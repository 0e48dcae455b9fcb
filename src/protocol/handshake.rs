//! The RFC 6455 §4.2 opening handshake, server side: validate an upgrade request, negotiate
//! extensions (permessage-deflate, RFC 7692) and build the 101 response, or say which HTTP
//! error to answer with.

use base64::Engine;
use bytes::Bytes;

use super::deflate::{self, Negotiated};
use super::http::{self, Request};

/// Why an upgrade request was refused, with the response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an upgrade at all (a plain GET on a WebSocket path): 426 with `Upgrade: websocket`.
    NotAnUpgrade,
    /// `Sec-WebSocket-Version` other than 13: 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// A broken upgrade request (method, HTTP version, key): 400.
    Malformed(&'static str),
}

impl Refusal {
    /// The HTTP response that refuses the upgrade.
    pub fn response(&self) -> Bytes {
        match self {
            Refusal::NotAnUpgrade => http::text(
                426,
                "this is a WebSocket endpoint: send an Upgrade: websocket request",
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                false,
            ),
            Refusal::UnsupportedVersion => http::text(
                426,
                "unsupported WebSocket version: use 13",
                &[("Sec-WebSocket-Version", "13")],
                false,
            ),
            Refusal::Malformed(why) => http::text(400, why, &[], false),
        }
    }

    /// The response's status.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotAnUpgrade | Refusal::UnsupportedVersion => 426,
            Refusal::Malformed(_) => 400,
        }
    }
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value.
pub fn accept_key(req: &Request<'_>) -> Result<String, Refusal> {
    let wants_upgrade = req.header_has_token("Upgrade", "websocket");
    if !wants_upgrade {
        return Err(Refusal::NotAnUpgrade);
    }
    if req.method != "GET" {
        return Err(Refusal::Malformed("a WebSocket upgrade must be a GET"));
    }
    if req.version < 1 {
        return Err(Refusal::Malformed("a WebSocket upgrade needs HTTP/1.1"));
    }
    if !req.header_has_token("Connection", "upgrade") {
        return Err(Refusal::Malformed("missing Connection: Upgrade"));
    }
    match req.header_str("Sec-WebSocket-Version") {
        Some("13") => {}
        _ => return Err(Refusal::UnsupportedVersion),
    }
    let key = req.header_str("Sec-WebSocket-Key").ok_or(Refusal::Malformed("missing Sec-WebSocket-Key"))?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(Refusal::Malformed("Sec-WebSocket-Key must be 16 bytes in base64")),
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The 101 response completing the handshake. No extension or subprotocol is selected.
pub fn switching_protocols(accept: &str) -> Bytes {
    switching_protocols_with(accept, None)
}

/// permessage-deflate for this request: the first acceptable offer among all its
/// `Sec-WebSocket-Extensions` headers when `enabled` (the server or app allows compression),
/// else `None`. Keep the result for the connection and pass it to
/// [`switching_protocols_with`]; its `response_header()` is the header value the 101 carries.
pub fn negotiate(req: &Request<'_>, enabled: bool) -> Option<Negotiated> {
    if !enabled {
        return None;
    }
    let values = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .map(|(_, v)| *v);
    deflate::negotiate(values)
}

/// The 101 response, with `Sec-WebSocket-Extensions` when permessage-deflate was negotiated.
pub fn switching_protocols_with(accept: &str, deflate: Option<Negotiated>) -> Bytes {
    let mut out = Vec::with_capacity(220);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(n) = deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(n.response_header().as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parse;

    const GOOD: &[u8] = b"GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_sample_key() {
        let req = parse(GOOD).unwrap().unwrap();
        assert_eq!(accept_key(&req).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let resp = switching_protocols("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(resp.ends_with(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
    }

    #[test]
    fn plain_get_is_426_with_upgrade_header() {
        let req = parse(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n").unwrap().unwrap();
        let refusal = accept_key(&req).unwrap_err();
        assert_eq!(refusal, Refusal::NotAnUpgrade);
        let resp = refusal.response();
        assert!(resp.starts_with(b"HTTP/1.1 426 "));
        assert!(std::str::from_utf8(&resp).unwrap().contains("\r\nUpgrade: websocket\r\n"));
    }

    #[test]
    fn wrong_version_is_426_naming_13() {
        let raw = std::str::from_utf8(GOOD).unwrap().replace("Version: 13", "Version: 8");
        let req = parse(raw.as_bytes()).unwrap().unwrap();
        let refusal = accept_key(&req).unwrap_err();
        assert_eq!(refusal, Refusal::UnsupportedVersion);
        assert!(std::str::from_utf8(&refusal.response()).unwrap().contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn deflate_is_negotiated_only_when_enabled_and_offered() {
        let with = std::str::from_utf8(GOOD).unwrap().replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        );
        let req = parse(with.as_bytes()).unwrap().unwrap();
        assert_eq!(negotiate(&req, false), None);
        let n = negotiate(&req, true).unwrap();
        let resp = switching_protocols_with(&accept_key(&req).unwrap(), Some(n));
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ));
        assert!(text.ends_with("\r\n\r\n") && !text.ends_with("\r\n\r\n\r\n"));
        let plain = parse(GOOD).unwrap().unwrap();
        assert_eq!(negotiate(&plain, true), None);
        assert!(!std::str::from_utf8(&switching_protocols("x")).unwrap().contains("Extensions"));
    }

    #[test]
    fn bad_key_or_method_is_400() {
        let raw = std::str::from_utf8(GOOD).unwrap().replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        let req = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(accept_key(&req).unwrap_err().status(), 400);
        let raw = std::str::from_utf8(GOOD).unwrap().replace("GET", "POST");
        let req = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(accept_key(&req).unwrap_err().status(), 400);
    }
}
