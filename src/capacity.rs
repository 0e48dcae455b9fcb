//! How many connections this box can hold: the same arithmetic as `tuning/check.sh` (see
//! tuning/README.md, "Capacity estimate"), so the start-up log and the script agree.

/// Kernel memory per TCP socket and corecast's own per subscribed connection, held, as
/// benches/million.sh measured them (benches/RESULTS.md's `capacity-figures:` line; a test
/// keeps the two in step).
pub(crate) const KERNEL_BYTES_PER_SOCKET: u64 = 4660;
pub(crate) const CORECAST_BYTES_PER_SOCKET: u64 = 1076;

/// File descriptors kept for the process itself (listeners, io_uring, logs, executors).
pub(crate) const FD_SLACK: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub(crate) rlimit_nofile: u64,
    pub(crate) nr_open: u64,
    pub(crate) file_max: u64,
    pub(crate) files_allocated: u64,
    pub(crate) mem_total: u64,
    pub(crate) mem_available: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    pub(crate) capacity: u64,
    pub(crate) limited_by: &'static str,
    /// Connections memory alone would allow.
    pub(crate) memory_allows: u64,
}

pub(crate) fn estimate(i: &Inputs) -> Estimate {
    let fd_rlimit = i.rlimit_nofile.saturating_sub(FD_SLACK);
    let fd_nr_open = i.nr_open.saturating_sub(FD_SLACK);
    let fd_file_max = i.file_max.saturating_sub(i.files_allocated);
    let reserve = 536_870_912 + i.mem_total / 20;
    let per_socket = KERNEL_BYTES_PER_SOCKET + CORECAST_BYTES_PER_SOCKET;
    let mem_cap = i.mem_available.saturating_sub(reserve) / per_socket;
    let candidates = [
        ("RLIMIT_NOFILE", fd_rlimit),
        ("fs.nr_open", fd_nr_open),
        ("fs.file-max", fd_file_max),
        ("memory", mem_cap),
    ];
    let capacity = candidates.iter().map(|c| c.1).min().expect("non-empty");
    let limited_by = candidates.iter().find(|c| c.1 == capacity).expect("the minimum is one of them").0;
    Estimate { capacity, limited_by, memory_allows: mem_cap }
}

/// Reads the inputs from /proc for this process.
pub(crate) fn read_inputs(rlimit_nofile: u64) -> Option<Inputs> {
    let num = |path: &str| -> Option<u64> {
        std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some(Inputs {
        rlimit_nofile,
        nr_open: num("/proc/sys/fs/nr_open")?,
        file_max: num("/proc/sys/fs/file-max")?,
        files_allocated: num("/proc/sys/fs/file-nr")?,
        mem_total: field("MemTotal:")?,
        mem_available: field("MemAvailable:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_limit_names_the_factor() {
        let base = Inputs {
            rlimit_nofile: 20_000,
            nr_open: 1 << 20,
            file_max: u64::MAX / 2,
            files_allocated: 1000,
            mem_total: 24 << 30,
            mem_available: 23 << 30,
        };
        let e = estimate(&base);
        assert_eq!(e.capacity, 19_936);
        assert_eq!(e.limited_by, "RLIMIT_NOFILE");
        let e =
            estimate(&Inputs { rlimit_nofile: 1 << 30, nr_open: 1 << 30, mem_available: 1 << 30, ..base });
        assert_eq!(e.limited_by, "memory");
        assert_eq!(e.capacity, e.memory_allows);
    }

    #[test]
    fn figures_match_benches_results() {
        let results = include_str!("../benches/RESULTS.md");
        let line = results
            .lines()
            .find(|l| l.starts_with("capacity-figures:"))
            .expect("benches/RESULTS.md has a capacity-figures: line");
        assert_eq!(
            line,
            format!(
                "capacity-figures: kernel_bytes_per_socket={KERNEL_BYTES_PER_SOCKET} corecast_bytes_per_socket={CORECAST_BYTES_PER_SOCKET}"
            )
        );
    }
}
