//! Advances the core's coarse clock (whole seconds since the shard started) several times a
//! second, which fires due timers.

use std::time::{Duration, Instant};

use super::local::with_core;

pub async fn run(started: Instant) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = started.elapsed().as_secs() as u32;
        let unix = unix_now();
        with_core(|core| {
            core.set_unix_time(unix);
            core.tick(now);
        });
    }
}

/// Wall-clock Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
