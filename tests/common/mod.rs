//! Starts the real `corecast` binary for integration tests and finds its port from the log.
#![allow(dead_code)]

pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `corecast --host 127.0.0.1 --port 0 <args>` (or on the `--port` given in `args`)
    /// and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_on(0, args, env)
    }

    /// Starts corecast on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corecast"));
        cmd.args(["--host", "127.0.0.1"]);
        if !args.contains(&"--port") {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(args);
        cmd.env("RUST_LOG", "info").env_remove("CORECAST_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("corecast starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the port is handed over: a test that reads the log once the
                // server listens finds the listening line in it.
                {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                    let port = rest.split_whitespace().next().unwrap().rsplit(':').next().unwrap();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                    sent = true;
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("corecast did not start: {}", log.lock().unwrap());
            }
        };
        Server { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY-free: `kill` via the command-line tool keeps tests free of unsafe.
        let status =
            Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes on a new TCP connection and returns everything read until the server closes
/// (or `timeout`).
pub fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Reads one HTTP response head (up to the blank line) from `s`.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub const UPGRADE_TEMPLATE: &str = "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

pub fn upgrade_request(path: &str) -> String {
    UPGRADE_TEMPLATE.replace("{path}", path)
}

/// Opens a WebSocket with a raw TCP stream (no client library), returning it after the 101.
pub fn raw_ws(addr: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request(path).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    s
}

/// A client frame, masked (as RFC 6455 requires) or not (to test the server's refusal).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        Some(mask) => corecast::protocol::frame::encode_client(fin, opcode, payload, mask),
        None => {
            let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
            assert!(payload.len() < 126, "unmasked test frames are short");
            out.push(payload.len() as u8);
            out.extend_from_slice(payload);
            out
        }
    }
}

/// Reads one unmasked server frame: (opcode, payload). None on EOF/timeout.
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Reads frames until a close frame; returns its code.
pub fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (op, payload) = read_frame(s)?;
        if op == 8 {
            return Some(if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            });
        }
    }
}

/// Runs a test client program (node or Python) to completion and returns what it printed; fails
/// with that and `logs()` (the servers' logs, read after the run) unless it exits 0.
pub fn run_client(cmd: &mut Command, what: &str, logs: impl FnOnce() -> String) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{text}\nserver log:\n{}", out.status, logs());
    text
}

/// The project's third-party test tools (installed by scripts/test-deps.sh).
pub fn testenv() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv");
    assert!(
        dir.join(".stamps").exists(),
        "third-party test tools are missing: run scripts/test (or scripts/test-deps.sh) first"
    );
    dir
}

/// A file scripts/test-deps.sh installs under .testenv/ (`rel`), or a failure naming what is
/// missing and how to get it.
pub fn installed(rel: &str, what: &str) -> PathBuf {
    let path = testenv().join(rel);
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): scripts/test-deps.sh installs it; see .testenv/logs/ \
         for why it did not",
        path.display()
    );
    path
}

/// A command on PATH that scripts/test-deps.sh installs with apt-get (from `package`), or a
/// failure saying so.
pub fn apt_command(cmd: &str, package: &str) -> String {
    let runs = std::process::Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        runs,
        "`{cmd} --version` does not run: scripts/test-deps.sh installs it (Debian package {package})"
    );
    cmd.to_string()
}

/// `node`, with the npm packages the client scripts load (pusher-js, pusher, ws).
pub fn node() -> String {
    for module in ["pusher-js", "pusher", "ws"] {
        installed(&format!("node/node_modules/{module}/package.json"), &format!("npm {module}"));
    }
    apt_command("node", "nodejs")
}

/// The test venv's Python (websockets, pusher, prometheus-client, requests).
pub fn venv_python() -> PathBuf {
    installed("py/bin/python", "the Python test venv")
}

/// Polls `probe` every 20 ms until it returns Some, and returns that; fails naming `what` after
/// `timeout`, with `state()` describing what was last seen.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    state: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; {}", state());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `/metrics` scrape (OpenMetrics text).
pub fn scrape(addr: &str) -> String {
    let resp =
        raw_exchange(addr, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", Duration::from_secs(5));
    let resp = String::from_utf8_lossy(&resp).into_owned();
    assert!(resp.starts_with("HTTP/1.1 200 "), "/metrics: {resp}");
    resp.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The sum of every sample of `name` in a scrape (all label sets); None when absent.
pub fn metric(scrape: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Publishes one event through the signed HTTP API (as a backend would); returns the status line
/// and body.
pub fn publish(addr: &str, channels: &[&str], name: &str, data: &str) -> (String, String) {
    let body = serde_json::json!({"name": name, "channels": channels, "data": data}).to_string();
    signed_request(addr, "POST", "/apps/1/events", "", &body)
}

/// A signed HTTP API request with the development app's credentials.
pub fn signed_request(
    addr: &str,
    method: &str,
    path: &str,
    extra_query: &str,
    body: &str,
) -> (String, String) {
    let req = signed_http(method, path, extra_query, body);
    let resp = raw_exchange(addr, req.as_bytes(), Duration::from_secs(10));
    split_response(&resp)
}

/// The status line and body of an HTTP response.
pub fn split_response(resp: &[u8]) -> (String, String) {
    let resp = String::from_utf8_lossy(resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// A signed HTTP API request (with `Connection: close`) with the development app's credentials.
pub fn signed_http(method: &str, path: &str, extra_query: &str, body: &str) -> String {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut params =
        vec!["auth_key=app-key".to_string(), format!("auth_timestamp={ts}"), "auth_version=1.0".to_string()];
    if !body.is_empty() {
        params.push(format!("body_md5={:x}", md5::compute(body)));
    }
    params.extend(extra_query.split('&').filter(|p| !p.is_empty()).map(String::from));
    params.sort();
    let query = params.join("&");
    let sig = corecast::pusher::auth::sign("app-secret", &[format!("{method}\n{path}\n{query}").as_bytes()]);
    format!(
        "{method} {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Server RSS in bytes, from /proc.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A TCP port nothing listens on right now (for a receiver the test starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
