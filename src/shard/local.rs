//! The state a shard's tasks share: its `Core` and its read buffer, in thread-locals so that a
//! connection's task holds no pointer to them (8 bytes saved per connection).

use std::cell::RefCell;
use std::sync::Arc;

use rustls::ServerConfig;

use crate::core::Core;
use crate::pusher::Pusher;

/// A shard's core: the engine with the Pusher service.
pub(super) type ShardCore = Core<Pusher>;

/// Bytes read from a socket per call; also the largest chunk the decoder sees at once.
pub(super) const READ_BUFFER: usize = 64 * 1024;

thread_local! {
    static CORE: RefCell<Option<ShardCore>> = const { RefCell::new(None) };
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
    /// The TLS configuration new connections on the main listener get (None: plain TCP);
    /// replaced on SIGHUP. Established connections keep the one they started with.
    static TLS: RefCell<Option<Arc<ServerConfig>>> = const { RefCell::new(None) };
}

pub(super) fn set_tls(config: Option<Arc<ServerConfig>>) {
    TLS.with(|t| *t.borrow_mut() = config);
}

/// The TLS configuration for a connection accepted now.
pub(super) fn tls() -> Option<Arc<ServerConfig>> {
    TLS.with(|t| t.borrow().clone())
}

pub(super) fn install(core: ShardCore) {
    CORE.with(|c| *c.borrow_mut() = Some(core));
}

pub(super) fn take() -> Option<ShardCore> {
    CORE.with(|c| c.borrow_mut().take())
}

/// Runs `f` with this shard's core. Never nest: `f` must not call `with_core` again.
pub(super) fn with_core<R>(f: impl FnOnce(&mut ShardCore) -> R) -> R {
    CORE.with(|c| f(c.borrow_mut().as_mut().expect("the shard's core is installed")))
}

/// Runs `f` with the shard's read buffer.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
