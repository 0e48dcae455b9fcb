//! Advances the core's coarse clock (whole seconds since the shard started) several times a
//! second, which fires due timers.

use std::time::{Duration, Instant};

use super::local::with_core;

pub async fn run(started: Instant) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = started.elapsed().as_secs() as u32;
        let unix = unix_now();
        let rss = process_rss();
        with_core(|core| {
            core.set_unix_time(unix);
            core.set_process_rss(rss);
            core.tick(now);
        });
    }
}

/// Wall-clock Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The process's resident memory in bytes (0 if /proc is unreadable).
pub fn process_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
