//! The examples in a real browser through the real binary: Debian's headless Chromium (driven by
//! playwright-core) loads examples/online and examples/chatbot, whose backends (`node
//! server.js`, as `npm start` runs them) talk to this corecast started with the example's own
//! corecast.toml. Drivers: tests/clients/examples. Screenshots: target/tmp/example-screenshots
//! (copies are committed as examples/*/screenshot.png).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Fails naming what scripts/test-deps.sh did not install.
fn browser_tools(example: &str) {
    let env = testenv();
    for (path, what) in [
        (PathBuf::from("/usr/bin/chromium"), "Debian's chromium package".to_string()),
        (env.join("browser/node_modules/playwright-core"), "npm playwright-core".to_string()),
        (
            Path::new(ROOT).join("examples").join(example).join("node_modules"),
            format!("examples/{example}'s npm packages"),
        ),
    ] {
        assert!(path.exists(), "{} is missing ({what}): run scripts/test-deps.sh", path.display());
    }
}

/// A fresh directory for one test's files.
fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where a test's screenshot goes.
fn screenshot(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs tests/clients/examples/`script` with node; it exits 0 when every assertion holds.
fn drive(server: &Server, script: &str, env: &[(&str, String)]) {
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(ROOT).join("tests/clients/examples").join(script))
        .env("CORECAST_PORT", server.port.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)));
    run_client(&mut cmd, script, || server.log());
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is not a page's PNG",
        path.display()
    );
}

#[test]
fn online_example_lists_each_user_once_and_records_time_online() {
    browser_tools("online");
    let dir = work_dir("online");
    // The example's own corecast.toml, with webhooks to this test's backend port (the flags of
    // Server::start override its host and port).
    let backend = free_port();
    let toml = std::fs::read_to_string(Path::new(ROOT).join("examples/online/corecast.toml")).unwrap();
    assert!(toml.contains("http://127.0.0.1:3000/pusher/webhooks"), "{toml}");
    let toml = toml.replace("127.0.0.1:3000", &format!("127.0.0.1:{backend}"));
    let config = dir.join("corecast.toml");
    std::fs::write(&config, toml).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap(), "--cores", "2"]);
    let png = screenshot("online");
    drive(
        &server,
        "online.js",
        &[
            ("BACKEND_PORT", backend.to_string()),
            ("WORK_DIR", dir.display().to_string()),
            ("SCREENSHOT", png.display().to_string()),
        ],
    );
    assert_png(&png);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn online_example_time_rules() {
    browser_tools("online");
    let mut cmd = Command::new("node");
    cmd.args(["--test", "db.test.js"]).current_dir(Path::new(ROOT).join("examples/online"));
    run_client(&mut cmd, "examples/online/db.test.js", || "(no server)".into());
}

#[test]
fn chatbot_example_answers_in_the_page_and_survives_a_slow_or_failing_bot() {
    browser_tools("chatbot");
    let config = Path::new(ROOT).join("examples/chatbot/corecast.toml");
    let server = Server::start(&["--config", config.to_str().unwrap(), "--cores", "2"]);
    let png = screenshot("chatbot");
    drive(
        &server,
        "chatbot.js",
        &[
            ("BACKEND_PORTS", format!("{},{}", free_port(), free_port())),
            ("SCREENSHOT", png.display().to_string()),
        ],
    );
    assert_png(&png);
}

/// GET `path` on 127.0.0.1:`port`: (status line, body); None when nothing listens.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let resp = raw_exchange(&format!("127.0.0.1:{port}"), req.as_bytes(), std::time::Duration::from_secs(5));
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn poll<T>(what: &str, deadline: std::time::Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The one command of an example's README (`npm start --prefix examples/NAME`) starts corecast
/// and the backend, serves the page with pusher-js from npm, and Ctrl-C stops both.
fn one_command_starts_and_stops(example: &str, backend_probe: &str) {
    use std::os::unix::process::CommandExt;
    browser_tools(example);
    let (corecast_port, backend_port) = (free_port(), free_port());
    let dir = work_dir(&format!("npm-start-{example}"));
    let mut npm = Command::new("npm")
        .args(["start", "--prefix", &format!("{ROOT}/examples/{example}")])
        .env("CORECAST_BIN", env!("CARGO_BIN_EXE_corecast"))
        .env("CORECAST_PORT", corecast_port.to_string())
        .env("PORT", backend_port.to_string())
        .env("DB_FILE", dir.join("online.sqlite3"))
        .env_remove("CORECAST_CONFIG")
        .stdout(std::fs::File::create(dir.join("npm.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("npm.err")).unwrap())
        .process_group(0) // as a terminal runs it: Ctrl-C signals the whole group
        .spawn()
        .expect("npm runs");
    let log = || {
        format!(
            "{}{}",
            std::fs::read_to_string(dir.join("npm.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("npm.err")).unwrap_or_default()
        )
    };
    let deadline = std::time::Duration::from_secs(60);
    let page = poll(&format!("the page of examples/{example}"), deadline, || {
        assert!(npm.try_wait().unwrap().is_none(), "npm start exited:\n{}", log());
        http_get(backend_port, "/").filter(|(status, _)| status.contains(" 200 "))
    });
    assert!(page.1.contains(r#"<script src="/pusher.min.js">"#), "{}", page.1);
    let (status, js) = http_get(backend_port, "/pusher.min.js").unwrap();
    let npm_js = format!("{ROOT}/examples/{example}/node_modules/pusher-js/dist/web/pusher.min.js");
    assert!(status.contains(" 200 ") && js == std::fs::read_to_string(npm_js).unwrap(), "{status}");
    let (status, body) = http_get(backend_port, backend_probe).unwrap();
    assert!(status.contains(" 200 "), "{backend_probe}: {status} {body}");
    assert!(
        http_get(corecast_port, "/ready").unwrap().0.contains(" 200 "),
        "corecast answers on {corecast_port}"
    );

    let status = Command::new("kill").args(["-s", "INT", "--", &format!("-{}", npm.id())]).status().unwrap();
    assert!(status.success());
    poll("npm start to end after Ctrl-C", std::time::Duration::from_secs(15), || npm.try_wait().unwrap());
    poll("corecast and the backend to stop", std::time::Duration::from_secs(15), || {
        (http_get(corecast_port, "/ready").is_none() && http_get(backend_port, "/").is_none()).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn online_example_starts_with_one_command() {
    one_command_starts_and_stops("online", "/api/today");
}

#[test]
fn chatbot_example_starts_with_one_command() {
    one_command_starts_and_stops("chatbot", "/api/me");
}

/// The live status page: served on the metrics port, on the main port only with the token, and
/// rendering its figures in a real browser.
#[test]
fn status_page_renders_live_figures_and_is_closed_by_default() {
    let env = testenv();
    for (path, what) in [
        (PathBuf::from("/usr/bin/chromium"), "Debian's chromium package"),
        (env.join("browser/node_modules/playwright-core"), "npm playwright-core"),
        (env.join("node/node_modules/pusher-js"), "npm pusher-js"),
    ] {
        assert!(path.exists(), "{} is missing ({what}): run scripts/test-deps.sh", path.display());
    }
    let token = "status-token-0123456789";
    let metrics = free_port();
    let server =
        Server::start(&["--cores", "2", "--metrics-port", &metrics.to_string(), "--status-token", token]);
    let plain = Server::start(&["--cores", "1"]);
    // Never open by default on the public port; the token opens it; the metrics port always.
    assert!(http_get(plain.port, "/status").unwrap().0.contains(" 404 "));
    assert!(http_get(plain.port, "/status.json").unwrap().0.contains(" 404 "));
    assert!(http_get(server.port, "/status").unwrap().0.contains(" 404 "));
    assert!(http_get(server.port, "/status?token=wrong-token-0123456789").unwrap().0.contains(" 404 "));
    let (status, body) = http_get(server.port, &format!("/status?token={token}")).unwrap();
    assert!(status.contains(" 200 ") && body.contains("<title>corecast status</title>"), "{status}");
    let (status, json) = http_get(server.port, &format!("/status.json?token={token}")).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cores"].as_array().unwrap().len(), 2, "{json}");
    assert!(http_get(metrics, "/status").unwrap().0.contains(" 200 "));
    // No external assets: the page loads nothing but status.json.
    assert!(!body.contains("http://") && !body.contains("https://") && !body.contains("src="));

    let png = screenshot("status");
    drive(
        &server,
        "status.js",
        &[("METRICS_PORT", metrics.to_string()), ("SCREENSHOT", png.display().to_string())],
    );
    assert_png(&png);
}

/// Issue 16: a real browser negotiates permessage-deflate with corecast on its own and reads a
/// compressed event through pusher-js.
#[test]
fn chromium_negotiates_compression_and_reads_compressed_events() {
    let env = testenv();
    for (path, what) in [
        (PathBuf::from("/usr/bin/chromium"), "Debian's chromium package"),
        (env.join("browser/node_modules/playwright-core"), "npm playwright-core"),
        (env.join("node/node_modules/pusher-js"), "npm pusher-js"),
        (env.join("node/node_modules/pusher"), "npm pusher"),
    ] {
        assert!(path.exists(), "{} is missing ({what}): run scripts/test-deps.sh", path.display());
    }
    let server = Server::start(&["--cores", "2", "--permessage-deflate"]);
    drive(&server, "compression.js", &[]);
    let m = scrape(&server.addr());
    assert_eq!(metric(&m, "corecast_deflate_negotiated_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "corecast_deflate_frames_total"), Some(1.0), "the event went out compressed: {m}");
    assert!(metric(&m, "corecast_deflate_bytes_saved_total").unwrap() > 2000.0, "{m}");
}
