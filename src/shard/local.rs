//! The state a shard's tasks share: its `Core` and its read buffer, in thread-locals so that a
//! connection's task holds no pointer to them (8 bytes saved per connection).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

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
    /// The origin of the shard's clock: when it installed its core.
    static STARTED: Instant = Instant::now();
}

/// The shard's clock: milliseconds since it installed its core. The core sees it at every entry
/// point (`with_core`), and in whole seconds through the ticker.
pub(super) fn clock_ms() -> u64 {
    STARTED.with(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn set_tls(config: Option<Arc<ServerConfig>>) {
    TLS.with(|t| *t.borrow_mut() = config);
}

/// The TLS configuration for a connection accepted now.
pub(super) fn tls() -> Option<Arc<ServerConfig>> {
    TLS.with(|t| t.borrow().clone())
}

pub(super) fn install(core: ShardCore) {
    STARTED.with(|_| ());
    CORE.with(|c| *c.borrow_mut() = Some(core));
}

pub(super) fn take() -> Option<ShardCore> {
    CORE.with(|c| c.borrow_mut().take())
}

/// Runs `f` with this shard's core, its clock set to now. Never nest: `f` must not call
/// `with_core` again.
pub(super) fn with_core<R>(f: impl FnOnce(&mut ShardCore) -> R) -> R {
    let now = clock_ms();
    CORE.with(|c| {
        let mut core = c.borrow_mut();
        let core = core.as_mut().expect("the shard's core is installed");
        core.set_clock_ms(now);
        f(core)
    })
}

/// Runs `f` with the shard's read buffer.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
