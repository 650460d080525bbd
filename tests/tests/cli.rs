//! The `quiver` binary on registry files, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use quiver_tests::{quiver_bin, quiver_command, workspace_root, TempDir};

#[test]
fn the_tests_run_the_binary_cargo_built_for_them() {
    assert_eq!(
        quiver_bin(),
        std::path::Path::new(env!("CARGO_BIN_EXE_quiver-e2e"))
    );
}

#[test]
fn check_accepts_the_example_registry() {
    let out = quiver_command()
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
    let dir = TempDir::new("cli");
    let path = dir.join("bad.toml");
    let text = std::fs::read_to_string(workspace_root().join("examples/registry.toml"))
        .unwrap()
        .replace("type = \"vector<64>\"", "type = \"vectr<64>\"");
    std::fs::write(&path, text).unwrap();
    let out = quiver_command().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feature view \"user_embedding\" feature \"embedding\" field \"type\""),
        "{stderr}"
    );
    assert!(stderr.contains("unknown type \"vectr<64>\""), "{stderr}");
}
