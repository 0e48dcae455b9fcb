//! corecast: a thread-per-core WebSocket edge server speaking the Pusher Channels protocol.
//! See ARCHITECTURE.md for the map.

pub mod capacity;
pub mod cluster;
pub mod config;
pub mod core;
pub mod metrics;
pub mod protocol;
pub mod pusher;
pub mod shard;
pub mod startup;
pub mod webhooks;
