//! corecast: a thread-per-core WebSocket edge server speaking the Pusher Channels protocol.
//! See ARCHITECTURE.md for the map.
//!
//! The public surface is what the binary, the benchmarks, the fuzz targets and the integration
//! tests use; everything else is crate-private.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod capacity;
mod cluster;
pub mod config;
mod core;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod protocol;
pub mod pusher;
mod shard;
mod startup;
mod webhooks;

pub use shard::run;
pub use startup::check_limits;
