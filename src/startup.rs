//! Start-up checks: file-descriptor limits against the configured maximum, and the capacity
//! estimate shared with tuning/check.sh.

use crate::capacity;
use crate::config::Config;

/// Raises the soft RLIMIT_NOFILE to the hard limit, then logs one warning if the limits cannot
/// hold `max_connections`, and the capacity estimate.
pub fn check_limits(cfg: &Config) {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("cannot read RLIMIT_NOFILE: {e}");
            return;
        }
    };
    let soft = if soft < hard {
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        }
    } else {
        soft
    };
    let nr_open =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let wanted = cfg.max_connections as u64 + capacity::FD_SLACK;
    if soft < wanted || nr_open.is_some_and(|n| n < wanted) {
        log::warn!(
            "max_connections={} needs about {wanted} file descriptors but RLIMIT_NOFILE={soft} (hard {hard}) and fs.nr_open={}: \
             at most ~{} connections will be accepted. Fix: raise LimitNOFILE (tuning/corecast.service) or `ulimit -n` and \
             fs.nr_open (tuning/apply.sh), or lower --max-connections",
            cfg.max_connections,
            nr_open.map_or("?".to_string(), |n| n.to_string()),
            soft.min(nr_open.unwrap_or(u64::MAX)).saturating_sub(capacity::FD_SLACK),
        );
    }
    if let Some(inputs) = capacity::read_inputs(soft) {
        let e = capacity::estimate(&inputs);
        log::info!(
            "capacity: {} connections (limited by {}); memory would allow {} (at {} kernel + {} corecast bytes per socket)",
            e.capacity,
            e.limited_by,
            e.memory_allows,
            capacity::KERNEL_BYTES_PER_SOCKET,
            capacity::CORECAST_BYTES_PER_SOCKET
        );
    }
}
