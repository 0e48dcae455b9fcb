//! Advances the core's coarse clock (whole seconds since the shard started) several times a
//! second, which fires due timers. The only clock the core sees.

use std::time::{Duration, Instant};

use super::local::with_core;

pub(super) async fn run(started: Instant) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
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
