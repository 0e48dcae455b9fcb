//! Advances the core's coarse clock (whole seconds of the shard's clock, `local::clock_ms`)
//! several times a second, which fires due timers.

use std::time::Duration;

use super::local::{clock_ms, with_core};

pub(super) async fn run() {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = u32::try_from(clock_ms() / 1000).unwrap_or(u32::MAX);
        let unix = unix_now();
        with_core(|core| core.tick(now, unix));
    }
}

/// Wall-clock Unix seconds.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
