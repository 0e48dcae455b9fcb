//! Incremental UTF-8 validation for text messages that arrive in pieces.

/// The bytes can never become valid UTF-8 (close 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates `buf[*valid_up_to..]`, advancing `valid_up_to` over complete valid characters.
/// A truncated character at the end is not an error (more bytes may follow); any byte sequence
/// that can never become valid is, at once (fail fast, RFC 6455 §8.1).
pub fn validate_more(buf: &[u8], valid_up_to: &mut usize) -> Result<(), InvalidUtf8> {
    match simdutf8::compat::from_utf8(&buf[*valid_up_to..]) {
        Ok(_) => {
            *valid_up_to = buf.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() => {
            *valid_up_to += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(InvalidUtf8),
    }
}

/// Validates a complete text message.
pub fn validate_complete(buf: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(buf).map(|_| ()).map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_character_waits_for_more_bytes() {
        let text = "κόσμε".as_bytes();
        let mut valid = 0;
        validate_more(&text[..3], &mut valid).unwrap();
        assert_eq!(valid, 2);
        validate_more(text, &mut valid).unwrap();
        assert_eq!(valid, text.len());
    }

    #[test]
    fn invalid_byte_fails_before_the_message_ends() {
        let mut valid = 0;
        assert!(validate_more(b"ab\xc0\xaf", &mut valid).is_err());
        let mut valid = 0;
        assert!(validate_more(b"\xed\xa0", &mut valid).is_err()); // surrogate prefix
        assert!(validate_complete(b"\xe2\x82").is_err());
        assert!(validate_complete("€".as_bytes()).is_ok());
    }
}
