//! ARCHITECTURE.md's invariants, enforced on the source text (like rust-analyzer's tidy test):
//! the module graph is a one-way tree, glommio stays in `shard/`, the pure and engine layers
//! read no clock, `unsafe` appears only in `shard/sys.rs` with a SAFETY comment for each block,
//! and per-connection structs carry size assertions.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`core`, `pusher`, ... or `lib`/`main`).
fn layer(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Code without comments (line and doc comments), so that prose may name anything.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The top-level modules a file names through `crate::`.
fn crate_refs(text: &str) -> Vec<String> {
    let code = code(text);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    // `use crate::{a, b}` lists.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::{") {
        let after = &rest[at + "crate::{".len()..];
        let list = &after[..after.find('}').unwrap_or(after.len())];
        for item in list.split(',') {
            let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = after;
    }
    out
}

/// What each layer may import from the crate (besides itself). The tree:
/// protocol ← core ← pusher ← {cluster, webhooks, metrics, config} ← shard ← lib/main.
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    Some(match layer {
        "protocol" => &[],
        "core" => &["protocol"],
        "pusher" => &["core", "protocol"],
        "cluster" | "webhooks" | "metrics" | "config" => &["pusher", "core", "protocol"],
        "capacity" => &[],
        "startup" => &["capacity", "config"],
        "fuzzing" => &["config", "core", "pusher", "protocol"],
        "shard" => &["cluster", "webhooks", "metrics", "config", "pusher", "core", "protocol"],
        "lib" | "main" => return None,
        other => panic!("src/{other}: a new top-level module: add it to tests/tidy.rs and ARCHITECTURE.md"),
    })
}

#[test]
fn layers_import_only_the_layers_below_them() {
    let mut wrong = Vec::new();
    for path in sources(&src()) {
        let layer = layer(&path);
        let Some(ok) = allowed(&layer) else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        for name in crate_refs(&text) {
            if name != layer && !ok.contains(&name.as_str()) {
                wrong.push(format!("{}: imports crate::{name}", path.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "a module imports a layer above it:\n{}", wrong.join("\n"));
}

#[test]
fn glommio_only_under_shard() {
    for path in sources(&src()) {
        let text = code(&std::fs::read_to_string(&path).unwrap());
        if text.contains("glommio") {
            assert_eq!(layer(&path), "shard", "{}: glommio outside src/shard/", path.display());
        }
    }
}

#[test]
fn protocol_core_and_pusher_read_no_clock() {
    for path in sources(&src()) {
        if !matches!(layer(&path).as_str(), "protocol" | "core" | "pusher") {
            continue;
        }
        let text = code(&std::fs::read_to_string(&path).unwrap());
        for clock in ["Instant", "SystemTime", "UNIX_EPOCH", "clock_gettime", "chrono"] {
            assert!(
                !text.contains(clock),
                "{}: reads a clock ({clock}); take time from tick()",
                path.display()
            );
        }
    }
}

#[test]
fn unsafe_only_in_shard_sys_with_a_safety_comment_per_block() {
    let sys = src().join("shard/sys.rs");
    for path in sources(&src()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = code(&text);
        let uses = code.matches("unsafe {").count()
            + code.matches("unsafe fn").count()
            + code.matches("unsafe impl").count();
        if path != sys {
            assert_eq!(uses, 0, "{}: unsafe outside src/shard/sys.rs", path.display());
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if code_of(line).contains("unsafe {") {
                let above = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim_start().starts_with("//") || code_of(l).contains("let "));
                assert!(
                    above.into_iter().any(|l| l.contains("// SAFETY:")),
                    "src/shard/sys.rs:{}: an unsafe block without a // SAFETY: comment",
                    i + 1
                );
            }
        }
    }
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"), "the crate root denies unsafe code");
}

fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn per_connection_structs_are_size_asserted() {
    let conn = std::fs::read_to_string(src().join("core/conn.rs")).unwrap();
    assert!(conn.contains("const _: () = assert!(std::mem::size_of::<Conn<()>>()"));
    let pusher = std::fs::read_to_string(src().join("pusher/conn_state.rs")).unwrap();
    assert!(pusher.contains("const _: () = assert!(std::mem::size_of::<PusherConn>()"));
    assert!(
        pusher.contains("const _: () = assert!(std::mem::size_of::<crate::core::conn::Conn<PusherConn>>()")
    );
}

#[test]
fn the_tidy_checks_can_fail() {
    // The checks above would see these (so a regex slip cannot make them pass vacuously).
    assert_eq!(
        crate_refs("use crate::pusher::Pusher;\nfn f() { crate::cluster::x() }"),
        ["pusher", "cluster"]
    );
    assert_eq!(crate_refs("use crate::{config, shard::run};"), ["config", "shard"]);
    assert!(crate_refs("// crate::pusher in a comment").is_empty());
    assert_eq!(allowed("core"), Some(&["protocol"][..]));
}
