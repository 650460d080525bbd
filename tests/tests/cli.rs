//! The `quiver` binary on registry files, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use quiver_tests::{quiver_bin, workspace_root};

#[test]
fn check_accepts_the_example_registry() {
    let out = Command::new(quiver_bin())
        .arg("check")
        .arg(workspace_root().join("examples/registry.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("feature view user_stats on user: 20 features"),
        "{stdout}"
    );
    assert!(stdout.contains("feature view user_embedding on user: 1 features (1 vectors)"));
}

#[test]
fn check_names_the_bad_field_and_fails() {
    let dir = std::env::temp_dir().join(format!("quiver-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let text = std::fs::read_to_string(workspace_root().join("examples/registry.toml"))
        .unwrap()
        .replace("type = \"vector<64>\"", "type = \"vectr<64>\"");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(quiver_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feature view \"user_embedding\" feature \"embedding\" field \"type\""),
        "{stderr}"
    );
    assert!(stderr.contains("unknown type \"vectr<64>\""), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
