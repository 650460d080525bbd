//! End-to-end tests live in `tests/`; this library holds what they share: finding (and if
//! needed building) the real `quiver` binary, running it as a server (`server`), and building
//! requests for it (`req`).

#![deny(unsafe_code)]

pub mod req;
pub mod server;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of the `quiver` binary of this build profile, building it first if cargo has not.
///
/// Test binaries live in `target/<profile>/deps/`; the binary sits in `target/<profile>/`.
pub fn quiver_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps layout")
            .to_path_buf();
        let bin = profile_dir.join(format!("quiver{}", std::env::consts::EXE_SUFFIX));
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "quiver-server", "--bin", "quiver"])
            .current_dir(workspace_root());
        if release {
            cmd.arg("--release");
        }
        // Always ask cargo: it is a no-op when the binary is fresh, and rebuilds a stale one.
        let status = cmd.status().expect("run cargo build for the quiver binary");
        assert!(status.success(), "building the quiver binary failed");
        bin
    })
    .clone()
}

/// Runs the `quiver` binary as a client (no token or server from the environment); returns
/// its exit code, stdout and stderr.
pub async fn quiver_cli(args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(quiver_bin())
            .args(&args)
            .env_remove("QUIVER_AUTH_TOKEN")
            .env_remove("QUIVER_SERVER")
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
