//! The RFC 6455 §4.2 opening handshake, server side: validate an upgrade request and build the
//! 101 response, or say which HTTP error to answer with.

use base64::Engine;
use bytes::Bytes;

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
    let mut out = Vec::with_capacity(130);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
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
    fn bad_key_or_method_is_400() {
        let raw = std::str::from_utf8(GOOD).unwrap().replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        let req = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(accept_key(&req).unwrap_err().status(), 400);
        let raw = std::str::from_utf8(GOOD).unwrap().replace("GET", "POST");
        let req = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(accept_key(&req).unwrap_err().status(), 400);
    }
}
