//! tuning/: check.sh on this machine, apply.sh and --revert inside a fresh network namespace,
//! --dry-run for the global keys, shellcheck. The scenarios live in tuning/test.sh.

#[test]
fn tuning_scripts() {
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/test.sh"))
        .output()
        .expect("bash runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tuning/test.sh failed:\n{text}");
    assert!(text.contains("capacity: "), "tuning/test.sh did not run check.sh:\n{text}");
}
