//! Real third-party WebSocket clients against /echo: Python `websockets` and the Autobahn
//! TestSuite fuzzing client (RFC 6455 conformance, cases 1.* to 10.*; also over TLS, `wss://`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn python_websockets_client() {
    let python = venv_python();
    let server = Server::start(&["--echo"]);
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/websockets_echo.py"))
        .arg(server.url("/echo"));
    run_client(&mut cmd, "websockets_echo.py", || server.log());
}

/// Which of Autobahn's cases a run covers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Cases {
    /// 1.* to 10.*: framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close, limits.
    Core,
    /// permessage-deflate (the server started with --permessage-deflate), 12.*: compressed
    /// messages of many sizes with the default parameters (90 cases). Apart from 13.* so that
    /// the two, each minutes of a Python client's CPU, run side by side on the suite's threads.
    Deflate12,
    /// 13.*: the same with each negotiable parameter and window size (126 cases).
    Deflate13,
}

/// Runs an Autobahn fuzzing client against /echo and fails on any case that is not OK,
/// NON-STRICT or INFORMATIONAL.
fn autobahn(runner: &str, which: Cases) {
    autobahn_with(runner, which, None)
}

/// `autobahn`, with the server speaking TLS with `tls`'s certificate when given (wstest only:
/// it verifies the certificate against the test CA, given to OpenSSL as SSL_CERT_FILE).
fn autobahn_with(runner: &str, which: Cases, tls: Option<&common::tls::Pki>) {
    let tool = match runner {
        "kosoku" => installed("py/bin/kosoku", "kosoku (Autobahn's cases for Python 3)"),
        _ => installed("V2/bin/wstest", "the Autobahn TestSuite (wstest, Python 2.7)"),
    };
    // Autobahn's 9.* cases send messages up to 16 MiB: allow them for this run.
    let big = "20000000";
    let mut args = vec![
        "--echo",
        "--max-message-size",
        big,
        "--max-frame-size",
        big,
        "--max-outbound-bytes",
        "40000000",
    ];
    if which != Cases::Core {
        args.push("--permessage-deflate");
    }
    let (cert, key);
    if let Some(pki) = tls {
        pki.issue("localhost");
        (cert, key) = (pki.cert.to_string_lossy().into_owned(), pki.key.to_string_lossy().into_owned());
        args.extend(["--tls-cert", &cert, "--tls-key", &key]);
    }
    let server = Server::start(&args);
    let (include, exclude): (&[&str], &[&str]) = match which {
        Cases::Core => (&["*"], &["12.*", "13.*"]),
        Cases::Deflate12 => (&["12.*"], &[]),
        Cases::Deflate13 => (&["13.*"], &[]),
    };
    let tag = if tls.is_some() { "-tls" } else { "" };
    let out_dir = std::env::temp_dir()
        .join(format!("corecast-autobahn-{runner}{tag}-{which:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let status = if runner == "kosoku" {
        assert!(tls.is_none(), "kosoku 0.1.0 has no wss:// (it refuses the scheme)");
        // kosoku takes host:port only: with --echo, an upgrade on / is the echo endpoint.
        let mut cmd = Command::new(&tool);
        cmd.args(["-m", "fuzzingclient", "-p", "2"]);
        for c in include.iter().filter(|c| **c != "*") {
            cmd.args(["-i", c]);
        }
        for c in exclude {
            cmd.args(["-x", c]);
        }
        cmd.arg("-o")
            .arg(&out_dir)
            .arg(server.addr())
            .current_dir(&out_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
    } else {
        // Over TLS: the certificate names localhost, and wstest checks it when given a hostname.
        let target = match tls {
            None => serde_json::json!({"agent": "corecast", "url": server.url("/echo")}),
            Some(_) => serde_json::json!({
                "agent": "corecast",
                "url": format!("wss://localhost:{}/echo", server.port),
                "hostname": "localhost"
            }),
        };
        let spec = serde_json::json!({
            "options": {"failByDrop": false},
            "outdir": out_dir.join("reports"),
            "servers": [target],
            "cases": include,
            "exclude-cases": exclude,
            "exclude-agent-cases": {}
        });
        std::fs::write(out_dir.join("spec.json"), spec.to_string()).unwrap();
        let mut cmd = Command::new(&tool);
        if let Some(pki) = tls {
            cmd.env("SSL_CERT_FILE", &pki.ca_pem);
        }
        cmd.args(["-m", "fuzzingclient", "-s", "spec.json"])
            .current_dir(&out_dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    let index = find_index(&out_dir).expect("Autobahn wrote index.json");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(index).unwrap()).unwrap();
    let (_agent, cases) = index.as_object().unwrap().iter().next().expect("one agent");
    let cases = cases.as_object().unwrap();
    let mut bad = Vec::new();
    for (id, case) in cases {
        let behavior = case["behavior"].as_str().unwrap_or("?");
        let close = case["behaviorClose"].as_str().unwrap_or("?");
        let ok = |b: &str| matches!(b, "OK" | "NON-STRICT" | "INFORMATIONAL");
        if !ok(behavior) || !ok(close) {
            bad.push(format!("{id}: {behavior}/{close}"));
        }
    }
    let expected = match which {
        Cases::Core => 300,
        Cases::Deflate12 => 90,
        Cases::Deflate13 => 126,
    };
    assert!(cases.len() >= expected, "only {} cases ran", cases.len());
    assert!(bad.is_empty(), "Autobahn ({runner}) cases not passed: {bad:?}");
    assert!(status.success(), "the Autobahn runner ({runner}) failed");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The Autobahn TestSuite itself (wstest, Python 2.7). Fails, saying why, where
/// scripts/test-deps.sh could not install it (no Python 2.7, or its install failed).
#[test]
fn autobahn_wstest_cases_1_to_10() {
    wstest_installed();
    autobahn("wstest", Cases::Core);
}

/// Cases 1.* to 10.* over TLS (`wss://`), wstest verifying the server's certificate against a
/// test CA. (kosoku 0.1.0 cannot run them: it has no wss:// client.)
#[test]
fn autobahn_wstest_cases_1_to_10_over_tls() {
    wstest_installed();
    let pki = common::tls::Pki::new("autobahn");
    autobahn_with("wstest", Cases::Core, Some(&pki));
}

/// The same cases with kosoku (a Python 3 runner of Autobahn's cases).
#[test]
fn autobahn_kosoku_cases_1_to_10() {
    autobahn("kosoku", Cases::Core);
}

/// permessage-deflate (RFC 7692): Autobahn's compression cases 12.* with wstest.
#[test]
fn autobahn_wstest_compression_cases_12() {
    wstest_installed();
    autobahn("wstest", Cases::Deflate12);
}

/// permessage-deflate (RFC 7692): Autobahn's compression cases 13.* with wstest.
#[test]
fn autobahn_wstest_compression_cases_13() {
    wstest_installed();
    autobahn("wstest", Cases::Deflate13);
}

/// Fails, saying why, where scripts/test-deps.sh could not install wstest.
fn wstest_installed() {
    let runner = std::fs::read_to_string(testenv().join("autobahn-runner")).unwrap_or_default();
    assert_eq!(
        runner.trim(),
        "wstest",
        "scripts/test-deps.sh did not install the Autobahn TestSuite (wstest needs Python 2.7: set \
         CORECAST_PY27 or install python2.7; its log is .testenv/logs/autobahn.log)"
    );
}

/// permessage-deflate (RFC 7692): Autobahn's compression cases 12.* with kosoku.
#[test]
fn autobahn_kosoku_compression_cases_12() {
    autobahn("kosoku", Cases::Deflate12);
}

/// permessage-deflate (RFC 7692): Autobahn's compression cases 13.* with kosoku.
#[test]
fn autobahn_kosoku_compression_cases_13() {
    autobahn("kosoku", Cases::Deflate13);
}

fn find_index(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.file_name().is_some_and(|n| n == "index.json") {
            return Some(p);
        }
        if p.is_dir()
            && let Some(found) = find_index(&p)
        {
            return Some(found);
        }
    }
    None
}
