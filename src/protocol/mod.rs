//! Sans-I/O protocol core: bytes in, events out.
//!
//! Architecture Invariant: nothing in `protocol/` performs I/O, reads a clock or imports glommio;
//! every function here is a pure function or state machine over byte slices.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
pub mod http;
pub mod utf8;
