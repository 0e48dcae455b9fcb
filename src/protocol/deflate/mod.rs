//! permessage-deflate (RFC 7692) without context takeover: negotiation, inflating received
//! messages, compressing sent ones.
//!
//! # How a connection uses it
//!
//! Per core (one each, created once, reused by every connection of the core):
//! - an [`Inflater`]: zlib inflate state and an output scratch (grows to the largest message
//!   inflated, at most the message limit + 1);
//! - a [`Deflater`]: zlib deflate state and an output scratch.
//!
//! Per connection: only the [`Negotiated`] byte (`Option<Negotiated>` is 1 byte). Between
//! messages a connection holds no compression state at all; mid-message, the decoder's
//! `Partial` holds the compressed bytes received so far, as it holds plain ones.
//!
//! 1. Handshake: [`crate::protocol::handshake::negotiate`] (with whether the app enables
//!    compression) gives the `Option<Negotiated>` to keep for the connection;
//!    [`crate::protocol::handshake::switching_protocols_with`] writes the 101 with the
//!    matching `Sec-WebSocket-Extensions` header.
//! 2. Receiving: call [`crate::protocol::decoder::decode_with`] with `Some(&mut inflater)`
//!    when the connection negotiated the extension, `None` otherwise. Messages arrive inflated
//!    and validated (text as UTF-8) in the usual `Event::Text` / `Event::Binary`; the limits
//!    apply to the inflated size (close 1009). RSV1 on a connection without the extension, on a
//!    control frame or on a continuation frame is close 1002; data that does not inflate is
//!    close 1007. The event borrows the inflater's scratch, so a core that keeps the inflater
//!    in `self` takes it out for the call (`Option<Box<Inflater>>` + `take()`), since the event
//!    callback borrows `self`.
//! 3. Sending: encode the plain frame as today; if any recipient negotiated the extension,
//!    also call [`Deflater::frame_if_smaller`] once. Per recipient, send
//!    `compressed.frame` when it exists and `negotiated.accepts(compressed.window_bits)`,
//!    else the plain frame. Both are `Bytes`, shared by all their recipients, and can cross
//!    cores as they are (carry `window_bits` with the frame). Control frames are never
//!    compressed.
//!
//! The crate doing the DEFLATE work is zlib-rs (used directly, through its safe API): pure
//! Rust (nothing to build or link), zlib's semantics (raw streams, sync flush, dictionaries),
//! fuzzed and differentially tested against zlib-ng by its maintainers, and faster than
//! miniz_oxide here on 100 B–9 KB Pusher events (compress about 2×, inflate 1.2–3×). Costs are
//! in `cargo bench --bench micro -- deflate`.

pub mod deflater;
pub mod extensions;
pub mod inflater;
pub mod negotiate;

pub use deflater::{CompressedFrame, Deflater};
pub use inflater::{InflateError, Inflater};
pub use negotiate::{Negotiated, negotiate};

/// Pseudo-random bytes (xorshift), for tests that need incompressible data.
#[cfg(test)]
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The most compressed bytes accepted for a frame or message whose inflated size is limited
/// to `limit`: zlib's worst case for incompressible data (stored blocks) is far below this,
/// and the extra room covers senders that flush often.
pub fn compressed_bound(limit: usize) -> usize {
    limit.saturating_add(limit / 8).saturating_add(limit / 64).saturating_add(64)
}
