//! Advances the core's coarse clock (whole seconds since the shard started) several times a
//! second, which fires due timers.

use std::time::{Duration, Instant};

use super::local::with_core;

pub async fn run(started: Instant) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = started.elapsed().as_secs() as u32;
        with_core(|core| core.tick(now));
    }
}
