//! End-to-end tests live in `tests/`; this library holds what they share: the `quiver` binary
//! under test, running it as a server (`server`), building requests for it (`req`), and what
//! the crash test's child writes (`crash_oracle`).
//!
//! The binary is `src/bin/quiver-e2e.rs`, the same command line as `quiver-server`'s `quiver`.
//! Because it belongs to this package, `cargo test` builds it before the integration tests, in
//! the same invocation and with the same features, and nothing here runs cargo.

pub mod crash_oracle;
pub mod fixtures;
pub mod req;
pub mod scenario;
pub mod server;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub use quiver_testkit::{workspace_root, TempDir};

/// The binary's name in `Cargo.toml`.
const BIN: &str = "quiver-e2e";

/// Path of the `quiver` binary cargo built for these tests.
///
/// Integration tests get it as `env!("CARGO_BIN_EXE_quiver-e2e")`, but this library is
/// compiled before the binary and sees no such variable. Cargo puts the binary in
/// `target/<profile>/`, the parent of the `deps/` directory holding the test executables;
/// `tests/cli.rs` checks that this finds the file `env!` names.
pub fn quiver_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{BIN}")) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps layout")
        .join(format!("{BIN}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: cargo builds it for this package's integration tests",
        bin.display()
    );
    bin
}

/// A command running the binary under the name `quiver` (clap names itself after `argv[0]`
/// in usage lines and errors), with no token or server taken from the environment.
pub fn quiver_command() -> Command {
    let mut cmd = Command::new(quiver_bin());
    cmd.arg0("quiver")
        .env_remove("QUIVER_AUTH_TOKEN")
        .env_remove("QUIVER_SERVER");
    cmd
}

/// Runs the `quiver` binary as a client; returns its exit code, stdout and stderr.
pub async fn quiver_cli(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = quiver_command()
            .args(&args)
            .output()
            .expect("run the quiver binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("the quiver client task")
}
