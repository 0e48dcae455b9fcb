//! Close codes (RFC 6455 §7.4) and the reasons the server fails a connection.

/// Why the server fails a WebSocket connection, each mapped to the close code it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A frame or frame sequence broke RFC 6455: close 1002.
    Protocol(&'static str),
    /// A text message or close reason was not UTF-8: close 1007.
    InvalidUtf8,
    /// A frame or message was over the configured maximum (for a compressed message: its
    /// inflated size): close 1009.
    TooBig,
    /// A compressed message was not valid DEFLATE data: close 1007.
    BadCompression,
}

impl Failure {
    /// The close code RFC 6455 prescribes for this failure.
    pub fn close_code(self) -> u16 {
        match self {
            Failure::Protocol(_) => code::PROTOCOL_ERROR,
            Failure::InvalidUtf8 | Failure::BadCompression => code::INVALID_PAYLOAD,
            Failure::TooBig => code::MESSAGE_TOO_BIG,
        }
    }

    /// The close reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Protocol(why) => why,
            Failure::InvalidUtf8 => "invalid UTF-8 in text message",
            Failure::TooBig => "message too big",
            Failure::BadCompression => "invalid compressed data",
        }
    }
}

/// Close codes (RFC 6455 §7.4.1).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away.
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data inconsistent with the message type (bad UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// Whether a peer may send `code` in a close frame (tungstenite's registry of allowed codes:
/// 1000–1003, 1007–1013, 3000–4999).
pub fn is_valid_close_code(code: u16) -> bool {
    tungstenite::protocol::frame::coding::CloseCode::from(code).is_allowed()
}

/// Parses a close frame payload: empty, or a valid code followed by a UTF-8 reason.
/// Returns the peer's code, if it sent one.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<u16>, Failure> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(Failure::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(Failure::Protocol("invalid close code"));
            }
            if simdutf8::basic::from_utf8(&payload[2..]).is_err() {
                return Err(Failure::Protocol("close reason is not UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_the_registry() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert!(parse_close_payload(b"\x03").is_err());
        assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some(1000)));
        assert!(parse_close_payload(b"\x03\xe8\xff").is_err());
        assert!(parse_close_payload(b"\x03\xed").is_err()); // 1005
        assert_eq!(Failure::TooBig.close_code(), 1009);
        assert_eq!(Failure::InvalidUtf8.close_code(), 1007);
    }
}
