//! Server and harness figures from /proc: resident memory, CPU time, kernel slab. A "server" may
//! be several processes (the nodes of a cluster sharing one port): their figures are summed.

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
pub const TICKS_PER_SEC: f64 = 100.0;

pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory field (`"VmRSS:"`, `"RssAnon:"`, `"RssFile:"`), bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Summed RSS of `pids` (those still running), or None when none is.
pub fn rss_sum(pids: &[u32]) -> Option<u64> {
    let v: Vec<u64> = pids.iter().filter_map(|&p| rss_bytes(p)).collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// Summed CPU ticks of `pids` (those still running), or None when none is.
pub fn cpu_ticks_sum(pids: &[u32]) -> Option<u64> {
    let v: Vec<u64> = pids.iter().filter_map(|&p| cpu_ticks(p)).collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// Open file descriptors of a process (its connections, for a server), or None once it is gone.
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// utime + stime of a process, in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `/proc/meminfo` field (`"Slab:"`, `"MemAvailable:"`), bytes.
pub fn meminfo_bytes(field: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Kernel slab memory (SReclaimable + SUnreclaim), bytes.
pub fn slab_bytes() -> Option<u64> {
    meminfo_bytes("Slab:")
}

/// Memory of TCP socket buffers, machine-wide (`/proc/net/sockstat` "TCP: ... mem", pages),
/// bytes: what queued, unread or unacknowledged data holds in the kernel.
pub fn tcp_buffer_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let pages: u64 = f.iter().position(|w| *w == "mem").and_then(|i| f.get(i + 1))?.parse().ok()?;
    Some(pages * 4096)
}

/// Finds every process listening on `port` (via /proc/net/tcp inodes): one for a single
/// server, each node for processes sharing the port (SO_REUSEPORT); in pid order.
pub fn pids_listening_on(port: u16) -> Vec<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && f[3] == "0A"
                && f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
            {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let mut pids = Vec::new();
    if inodes.is_empty() {
        return pids;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else { return pids };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.to_string_lossy() == *i)
            {
                pids.push(pid);
                break;
            }
        }
    }
    pids.sort_unstable();
    pids
}
