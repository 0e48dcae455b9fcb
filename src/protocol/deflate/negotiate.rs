//! permessage-deflate negotiation (RFC 7692 §5, §7.1): validate each offer, accept the first
//! acceptable one, and say what the server agreed to.
//!
//! Policy: the server always answers with `server_no_context_takeover` and
//! `client_no_context_takeover` (§7.1.1.1 and §7.1.1.2 let a server add both to any response),
//! so neither side keeps a compression window between messages and an idle connection holds
//! no compression state. An offer is declined when it has an unknown, duplicate or invalid
//! parameter (§5). Every valid offer can be honoured:
//!
//! - `server_max_window_bits=b` (8..=15): the response repeats `b`. The server compresses
//!   each message on its own, so no back-reference in a message of `n` bytes reaches further
//!   than `n - 1` bytes; a compressed frame thus fits any window of at least `n` bytes. A
//!   client that asked for a smaller window than a message needs gets that message
//!   uncompressed (allowed: compression is per message), see [`Negotiated::accepts`]. This is
//!   also how `b = 8` is honoured, which zlib-style compressors cannot produce (zlib rejects
//!   an 8-bit raw deflate window and uses 9 instead).
//! - `client_max_window_bits` (with or without a value): only tells the server that the client
//!   could take a limit; the server sets none, since it inflates with a 32 KiB window that
//!   decodes every window size.

use std::num::NonZeroU8;

use super::extensions::{self, Extension};

/// The registered extension name.
pub const NAME: &str = "permessage-deflate";

/// What a connection agreed to. One byte (`Option<Negotiated>` too), `Copy`, so a
/// per-connection struct can hold it directly.
///
/// Bits: 0–3 `server_max_window_bits` (8..=15), 4 whether the response states it, 5
/// `server_no_context_takeover`, 6 `client_no_context_takeover`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated(NonZeroU8);

const WINDOW_MASK: u8 = 0x0f;
const WINDOW_STATED: u8 = 0x10;
const SERVER_NO_TAKEOVER: u8 = 0x20;
const CLIENT_NO_TAKEOVER: u8 = 0x40;

impl Negotiated {
    fn new(server_max_window_bits: Option<u8>) -> Self {
        let bits = match server_max_window_bits {
            Some(b) => b | WINDOW_STATED,
            None => 15,
        };
        let byte = bits | SERVER_NO_TAKEOVER | CLIENT_NO_TAKEOVER;
        Negotiated(NonZeroU8::new(byte).expect("window bits are at least 8"))
    }

    /// The largest LZ77 window (log2 bytes) the client inflates with; 15 when unlimited.
    pub fn server_max_window_bits(self) -> u8 {
        self.0.get() & WINDOW_MASK
    }

    /// The server compresses every message on its own (always, under the current policy).
    pub fn server_no_context_takeover(self) -> bool {
        self.0.get() & SERVER_NO_TAKEOVER != 0
    }

    /// The client compresses every message on its own, so the server resets its inflater
    /// between messages (always, under the current policy).
    pub fn client_no_context_takeover(self) -> bool {
        self.0.get() & CLIENT_NO_TAKEOVER != 0
    }

    /// Whether this client can inflate a frame whose back-references need a window of
    /// `2^window_bits` bytes ([`super::CompressedFrame::window_bits`]). When it cannot, send it
    /// the uncompressed frame.
    pub fn accepts(self, window_bits: u8) -> bool {
        window_bits <= self.server_max_window_bits()
    }

    /// The `Sec-WebSocket-Extensions` value for the 101 response.
    pub fn response_header(self) -> String {
        let mut out = String::from(NAME);
        if self.server_no_context_takeover() {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover() {
            out.push_str("; client_no_context_takeover");
        }
        if self.0.get() & WINDOW_STATED != 0 {
            out.push_str("; server_max_window_bits=");
            out.push_str(&self.server_max_window_bits().to_string());
        }
        out
    }

    /// The byte this is stored as, for packing into a larger struct; see [`Self::from_u8`].
    pub fn to_u8(self) -> u8 {
        self.0.get()
    }

    /// The inverse of [`Self::to_u8`]; `None` for a byte `to_u8` never returns.
    pub fn from_u8(byte: u8) -> Option<Self> {
        let bits = byte & WINDOW_MASK;
        let known = WINDOW_MASK | WINDOW_STATED | SERVER_NO_TAKEOVER | CLIENT_NO_TAKEOVER;
        if bits < 8 || byte & !known != 0 {
            return None;
        }
        NonZeroU8::new(byte).map(Negotiated)
    }
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("server_max_window_bits", &self.server_max_window_bits())
            .field("server_no_context_takeover", &self.server_no_context_takeover())
            .field("client_no_context_takeover", &self.client_no_context_takeover())
            .finish()
    }
}

/// Chooses the first acceptable permessage-deflate offer among the values of every
/// `Sec-WebSocket-Extensions` header of a request, in order. `None`: no offer, or none
/// acceptable — answer without the extension.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a [u8]>) -> Option<Negotiated> {
    extensions::parse_all(header_values)
        .filter_map(Result::ok)
        .filter(|ext| ext.name == NAME)
        .find_map(|ext| accept(&ext).ok())
}

/// Why an offer was declined (RFC 7692 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// A parameter RFC 7692 does not define.
    Unknown,
    /// A parameter given twice.
    Duplicate,
    /// A value out of range or malformed.
    InvalidValue,
}

/// Validates one permessage-deflate offer and says what the server answers to it.
pub fn accept(offer: &Extension<'_>) -> Result<Negotiated, Decline> {
    let mut seen = [false; 4];
    let mut server_max_window_bits = None;
    for p in &offer.params {
        let (slot, needs_value) = match p.name {
            "server_no_context_takeover" => (0, Some(false)),
            "client_no_context_takeover" => (1, Some(false)),
            "server_max_window_bits" => (2, Some(true)),
            // With or without a value.
            "client_max_window_bits" => (3, None),
            _ => return Err(Decline::Unknown),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(Decline::Duplicate);
        }
        let value = p.value.as_deref();
        match (needs_value, value) {
            (Some(false), Some(_)) | (Some(true), None) => return Err(Decline::InvalidValue),
            _ => {}
        }
        if let Some(v) = value {
            let bits = window_bits(v).ok_or(Decline::InvalidValue)?;
            if slot == 2 {
                server_max_window_bits = Some(bits);
            }
        }
    }
    Ok(Negotiated::new(server_max_window_bits))
}

/// A window-bits value: a decimal integer without leading zeroes, 8 to 15 (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(values: &[&str]) -> Option<Negotiated> {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn what_browsers_offer_is_accepted_without_context_takeover() {
        let n = neg(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(n.response_header(), BOTH);
        assert_eq!(n.server_max_window_bits(), 15);
        assert!(n.server_no_context_takeover() && n.client_no_context_takeover());
        assert_eq!(neg(&["permessage-deflate"]).unwrap().response_header(), BOTH);
    }

    #[test]
    fn server_max_window_bits_is_repeated_in_the_response() {
        for bits in 8..=15u8 {
            let n = neg(&[&format!("permessage-deflate; server_max_window_bits={bits}")]).unwrap();
            assert_eq!(n.server_max_window_bits(), bits);
            assert_eq!(n.response_header(), format!("{BOTH}; server_max_window_bits={bits}"));
        }
        let quoted = neg(&[r#"permessage-deflate; server_max_window_bits="10""#]).unwrap();
        assert_eq!(quoted.server_max_window_bits(), 10);
    }

    #[test]
    fn a_small_window_takes_only_frames_that_fit_it() {
        let n = neg(&["permessage-deflate; server_max_window_bits=8"]).unwrap();
        assert!(n.accepts(8));
        assert!(!n.accepts(9));
        let unlimited = neg(&["permessage-deflate"]).unwrap();
        assert!(unlimited.accepts(15));
    }

    #[test]
    fn invalid_window_values_decline_the_offer() {
        for bad in ["7", "16", "08", "0", "", "x", "1 0", "+9"] {
            let offer = format!("permessage-deflate; server_max_window_bits={bad}");
            assert_eq!(neg(&[&offer]), None, "{offer}");
            let offer = format!("permessage-deflate; client_max_window_bits={bad}");
            assert_eq!(neg(&[&offer]), None, "{offer}");
        }
        assert_eq!(neg(&["permessage-deflate; server_max_window_bits"]), None, "needs a value");
        assert!(neg(&["permessage-deflate; client_max_window_bits=9"]).is_some());
    }

    #[test]
    fn unknown_duplicate_or_valued_flags_decline_the_offer() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; Server_No_Context_Takeover",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
        ] {
            assert_eq!(neg(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        let n = neg(&[
            "x-webkit-deflate-frame, permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(n.server_max_window_bits(), 12);
        // A malformed element does not hide the offers after it.
        let n = neg(&["permessage-deflate; =, permessage-deflate; server_max_window_bits=9"]).unwrap();
        assert_eq!(n.server_max_window_bits(), 9);
        assert_eq!(neg(&["x-webkit-deflate-frame"]), None);
        assert_eq!(neg(&[]), None);
    }

    #[test]
    fn autobahn_13_7_offers_pick_the_first() {
        // Autobahn 13.7: three offers; every one is valid, so the first is taken.
        let n = neg(&["permessage-deflate; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits, permessage-deflate; client_no_context_takeover; client_max_window_bits, permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(n.server_max_window_bits(), 8);
    }

    #[test]
    fn packs_into_one_byte() {
        assert_eq!(std::mem::size_of::<Option<Negotiated>>(), 1);
        for v in ["permessage-deflate", "permessage-deflate; server_max_window_bits=9"] {
            let n = neg(&[v]).unwrap();
            assert_eq!(Negotiated::from_u8(n.to_u8()), Some(n));
        }
        assert_eq!(Negotiated::from_u8(0), None);
        assert_eq!(Negotiated::from_u8(0x07), None);
        assert_eq!(Negotiated::from_u8(0x8f), None);
    }
}
