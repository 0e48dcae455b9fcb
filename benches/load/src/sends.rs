//! The server's send calls during a measured window, to report deliveries per send.
//!
//! Sources, in the order `auto` tries them: corecast's own counters on `/metrics`
//! (`corecast_send_syscalls_total`, `corecast_frames_written_total`), then `perf stat` on the
//! server process counting the syscalls that send on a socket (`sendto`, `sendmsg`,
//! `sendmmsg`, and `writev`/`write` on any descriptor but the non-sockets the server has open
//! when the window starts: glommio's eventfd wake-ups are `write`s) and the io_uring requests
//! that send (`SEND`, `SENDMSG`, `SEND_ZC`, `SENDMSG_ZC`). io_uring `WRITE`/`WRITEV` requests
//! carry no descriptor in the tracepoint and are files or eventfds in glommio: they are
//! reported apart (`io_uring_write_requests`), not counted as sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SEND_METRIC: &str = "corecast_send_syscalls_total";
const FRAMES_METRIC: &str = "corecast_frames_written_total";
const SEND_SYSCALLS: [&str; 3] = ["sendto", "sendmsg", "sendmmsg"];
const WRITE_SYSCALLS: [&str; 2] = ["writev", "write"];
/// io_uring opcodes that send on a socket: SENDMSG 9, SEND 26, SEND_ZC 47, SENDMSG_ZC 48.
const URING_SEND_FILTER: &str = "opcode == 9 || opcode == 26 || opcode == 47 || opcode == 48";
/// io_uring opcodes that write: WRITEV 2, WRITE_FIXED 5, WRITE 23.
const URING_WRITE_FILTER: &str = "opcode == 2 || opcode == 5 || opcode == 23";

/// A tracepoint filter leaving out the descriptors `pid` has open that are not sockets.
fn sockets_only_filter(pid: u32) -> Option<String> {
    let mut not_sockets = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        match std::fs::read_link(entry.path()) {
            Ok(target) if target.to_string_lossy().starts_with("socket:") => {}
            _ => not_sockets.push(format!("fd != {fd}")),
        }
    }
    (!not_sockets.is_empty()).then(|| not_sockets.join(" && "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Metrics,
    Perf,
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "metrics" => Ok(Mode::Metrics),
            "perf" => Ok(Mode::Perf),
            "off" => Ok(Mode::Off),
            _ => Err(format!("--count-sends must be auto, metrics, perf or off, not {s}")),
        }
    }
}

/// A window being measured.
pub enum Window {
    Metrics {
        server: SocketAddr,
        sends: u64,
        frames: Option<u64>,
    },
    Perf(Perf),
    /// Nothing to measure with (the reason is reported).
    None(String),
}

/// Sums every sample of the named metrics in an OpenMetrics/Prometheus text page.
pub fn sum_metric(page: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit_once('}').map_or(rest, |(_, v)| v).split_whitespace().next()?;
        let v = value.parse::<f64>().ok()? as u64;
        found = Some(found.unwrap_or(0) + v);
    }
    found
}

fn scrape(server: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    resp.starts_with("HTTP/1.1 200").then_some(resp)
}

fn metrics(server: SocketAddr) -> Option<(u64, Option<u64>)> {
    let page = scrape(server)?;
    Some((sum_metric(&page, SEND_METRIC)?, sum_metric(&page, FRAMES_METRIC)))
}

/// perf stat attached to the server, counting only between `enable` and `disable` (sent over
/// its control FIFO, each acknowledged), so the window is exact.
pub struct Perf {
    child: Child,
    out: PathBuf,
    ctl: std::fs::File,
    ack: std::fs::File,
}

fn nonblocking(write: bool, path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
}

impl Perf {
    fn start(pid: u32, dir: &std::path::Path) -> Result<Perf, String> {
        let out = dir.join("perf-sends.csv");
        let (ctl_path, ack_path) = (dir.join("perf-ctl.fifo"), dir.join("perf-ack.fifo"));
        for p in [&out, &ctl_path, &ack_path] {
            let _ = std::fs::remove_file(p);
        }
        for p in [&ctl_path, &ack_path] {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
                .map_err(|e| format!("mkfifo {}: {e}", p.display()))?;
        }
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x", ",", "--delay=-1", "-o"]).arg(&out);
        cmd.arg(format!("--control=fifo:{},{}", ctl_path.display(), ack_path.display()));
        for s in SEND_SYSCALLS {
            cmd.args(["-e", &format!("syscalls:sys_enter_{s}")]);
        }
        let sockets_only = sockets_only_filter(pid);
        for s in WRITE_SYSCALLS {
            cmd.args(["-e", &format!("syscalls:sys_enter_{s}")]);
            if let Some(f) = &sockets_only {
                cmd.args(["--filter", f]);
            }
        }
        cmd.args(["-e", "io_uring:io_uring_submit_req", "--filter", URING_SEND_FILTER]);
        cmd.args(["-e", "io_uring:io_uring_submit_req", "--filter", URING_WRITE_FILTER]);
        cmd.args(["-p", &pid.to_string()]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf did not start: {e}"))?;
        // perf opens its control FIFO once it has attached: until then a writer cannot open it.
        let until = Instant::now() + Duration::from_secs(10);
        let ctl = loop {
            if let Ok(f) = nonblocking(true, &ctl_path) {
                break f;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("perf stat ended ({status}): {}", err.trim()));
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err("perf stat did not attach within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let ack = nonblocking(false, &ack_path).map_err(|e| format!("{}: {e}", ack_path.display()))?;
        let mut perf = Perf { child, out, ctl, ack };
        perf.command("enable")?;
        Ok(perf)
    }

    /// Sends a control command and waits for perf's `ack`.
    fn command(&mut self, cmd: &str) -> Result<(), String> {
        writeln!(self.ctl, "{cmd}").map_err(|e| format!("perf control: {e}"))?;
        let until = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        // perf writes "ack\n" and its C string's NUL.
        while memchr::memmem::find(&got, b"ack\n").is_none() {
            match self.ack.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ if Instant::now() > until => return Err(format!("perf did not acknowledge {cmd}")),
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Value {
        let disabled = self.command("disable");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = disabled {
            return json!({"source": null, "reason": e});
        }
        match std::fs::read_to_string(&self.out) {
            Ok(text) => parse_perf(&text),
            Err(e) => json!({"source": null, "reason": format!("perf output: {e}")}),
        }
    }
}

/// Starts measuring. `dir` holds perf's output file.
pub fn begin(mode: Mode, server: SocketAddr, pid: Option<u32>, dir: &std::path::Path) -> Window {
    if mode == Mode::Off {
        return Window::None("off (--count-sends off)".into());
    }
    if matches!(mode, Mode::Auto | Mode::Metrics) {
        match metrics(server) {
            Some((sends, frames)) => return Window::Metrics { server, sends, frames },
            None if mode == Mode::Metrics => {
                return Window::None(format!("{SEND_METRIC} is not on the server's /metrics"));
            }
            None => {}
        }
    }
    let Some(pid) = pid else { return Window::None("no server pid for perf".into()) };
    match Perf::start(pid, dir) {
        Ok(p) => Window::Perf(p),
        Err(e) => Window::None(e),
    }
}

fn parse_perf(text: &str) -> Value {
    let mut by = serde_json::Map::new();
    let mut total = 0u64;
    let mut all_counted = true;
    let mut uring = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(count), Some(event)) = (f.first(), f.get(2)) else { continue };
        // The two io_uring events come in the order given: sends, then writes.
        let (name, is_send) = match event.strip_prefix("syscalls:sys_enter_") {
            Some(s) if WRITE_SYSCALLS.contains(&s) => (format!("{s} (sockets)"), true),
            Some(s) => (s.to_string(), true),
            None if event.starts_with("io_uring:") => {
                uring += 1;
                if uring == 1 {
                    ("io_uring_send_requests".to_string(), true)
                } else {
                    ("io_uring_write_requests".to_string(), false)
                }
            }
            None => continue,
        };
        match count.parse::<u64>() {
            Ok(n) => {
                if is_send {
                    total += n;
                }
                by.insert(name, json!(n));
            }
            Err(_) => {
                all_counted = false;
                by.insert(name, json!(count.trim()));
            }
        }
    }
    json!({"source": "perf", "send_calls": total, "by_call": by, "all_counted": all_counted})
}

impl Window {
    /// Ends the window: `{source, send_calls, ...}` or `{source: null, reason}`.
    pub fn end(self) -> Value {
        match self {
            Window::Metrics { server, sends, frames } => match metrics(server) {
                Some((s1, f1)) => json!({
                    "source": "metrics",
                    "send_calls": s1.saturating_sub(sends),
                    "frames_written": f1.zip(frames).map(|(a, b)| a.saturating_sub(b)),
                }),
                None => json!({"source": null, "reason": "/metrics stopped answering"}),
            },
            Window::Perf(p) => p.finish(),
            Window::None(reason) => json!({"source": null, "reason": reason}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_over_labels() {
        let page = "# TYPE corecast_send_syscalls counter\ncorecast_send_syscalls_total{core=\"0\"} 10\n\
                    corecast_send_syscalls_total{core=\"1\"} 32\ncorecast_send_syscalls_created 1.7e9\n\
                    corecast_frames_written_total 420\n# EOF\n";
        assert_eq!(sum_metric(page, SEND_METRIC), Some(42));
        assert_eq!(sum_metric(page, FRAMES_METRIC), Some(420));
        assert_eq!(sum_metric(page, "corecast_nothing_total"), None);
    }

    /// A /metrics endpoint whose counters grow by 100 sends and 950 frames per scrape.
    fn fake_metrics() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { break };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let i = i as u64;
                let body = format!(
                    "corecast_send_syscalls_total{{core=\"0\"}} {}\ncorecast_send_syscalls_total{{core=\"1\"}} {}\n\
                     corecast_frames_written_total{{core=\"0\"}} {}\n# EOF\n",
                    60 * i,
                    40 * i,
                    950 * i
                );
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        addr
    }

    #[test]
    fn a_window_counts_corecasts_own_counters_when_metrics_has_them() {
        let addr = fake_metrics();
        let w = begin(Mode::Auto, addr, None, &std::env::temp_dir());
        assert!(matches!(w, Window::Metrics { .. }), "metrics found first");
        let v = w.end();
        assert_eq!(v["source"], "metrics", "{v}");
        assert_eq!(v["send_calls"], 100);
        assert_eq!(v["frames_written"], 950);
    }

    #[test]
    fn perf_csv_is_summed_and_uncounted_events_are_flagged() {
        let text = "# started on Mon\n\n120,,syscalls:sys_enter_sendto,1000,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_sendmsg,0,0.00,,\n7,,syscalls:sys_enter_write,1000,100.00,,\n\
                    5,,io_uring:io_uring_submit_req,1000,100.00,,\n900,,io_uring:io_uring_submit_req,1000,100.00,,\n";
        let v = parse_perf(text);
        assert_eq!(v["send_calls"], 132, "io_uring writes are not sends");
        assert_eq!(v["by_call"]["sendto"], 120);
        assert_eq!(v["by_call"]["write (sockets)"], 7);
        assert_eq!(v["by_call"]["io_uring_send_requests"], 5);
        assert_eq!(v["by_call"]["io_uring_write_requests"], 900);
        assert_eq!(v["all_counted"], false);
    }
}
