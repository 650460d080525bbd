//! The way to the workspace's binaries for harnesses that run outside `cargo test`.
//!
//! Tests do not use [`find_or_build`]: cargo builds the binaries of a package before its
//! integration tests and hands them their paths, so a test run never starts a second build
//! with other features behind the first one's back.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Which build of a binary [`find_or_build`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `target/release`, whatever the caller was built with (measurements want it).
    Release,
    /// The profile the running executable was built with (a smoke run reuses the debug build
    /// the tests made).
    Current,
}

/// The workspace root (where `Cargo.lock` and `examples/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where a binary lives relative to the running executable.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    /// The target directory (`target/`).
    target: PathBuf,
    release: bool,
    /// `target/<profile>/<bin>`.
    bin: PathBuf,
}

/// `exe` is `target/<profile>/<harness>` or, for tests and examples,
/// `target/<profile>/{deps,examples}/<name>`.
fn locate(exe: &Path, bin: &str, profile: Profile) -> Location {
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        profile_dir.pop();
    }
    let release =
        profile == Profile::Release || profile_dir.file_name().is_some_and(|n| n == "release");
    let target = profile_dir
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    Location {
        target,
        release,
        bin,
    }
}

/// The path of binary `bin` of workspace package `package`, in the target directory the
/// running executable was built in. When the workspace's sources and cargo are at hand it
/// first runs `cargo build -q -p <package> --bin <bin> [--release]` (a no-op when the binary
/// is fresh), saying so on stderr; without them it uses whatever binary is there.
pub fn find_or_build(package: &str, bin: &str, profile: Profile) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let at = locate(&exe, bin, profile);
    let root = workspace_root();
    if root.join("Cargo.toml").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "-q", "-p", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", &at.target)
            .current_dir(&root);
        if at.release {
            cmd.arg("--release");
        }
        eprintln!(
            "building {bin} ({}): {cmd:?}",
            if at.release { "release" } else { "debug" }
        );
        let started = Instant::now();
        match cmd.status() {
            Ok(s) if s.success() => eprintln!("built {bin} in {:.1?}", started.elapsed()),
            Ok(s) => return Err(io::Error::other(format!("{cmd:?} exited with {s}"))),
            Err(e) => eprintln!("could not run {cargo} ({e}); using the binary that is there"),
        }
    }
    if at.bin.exists() {
        Ok(at.bin)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{bin} is not at {}", at.bin.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(exe: &str, profile: Profile) -> Location {
        locate(Path::new(exe), "quiver", profile)
    }

    #[test]
    fn the_binary_sits_in_the_profile_directory_of_the_caller() {
        let suffix = std::env::consts::EXE_SUFFIX;
        let bench = at("/w/target/release/quiver-bench", Profile::Current);
        assert_eq!(bench.target, Path::new("/w/target"));
        assert!(bench.release);
        assert_eq!(
            bench.bin,
            Path::new(&format!("/w/target/release/quiver{suffix}"))
        );
        let test = at("/w/target/debug/deps/e2e-0123abcd", Profile::Current);
        assert_eq!(test.target, Path::new("/w/target"));
        assert!(!test.release);
        assert_eq!(
            test.bin,
            Path::new(&format!("/w/target/debug/quiver{suffix}"))
        );
        // A debug harness asking for release measurements gets the release binary.
        let smoke = at("/w/target/debug/quiver-bench", Profile::Release);
        assert!(smoke.release);
        assert_eq!(
            smoke.bin,
            Path::new(&format!("/w/target/release/quiver{suffix}"))
        );
    }

    #[test]
    fn the_workspace_root_holds_the_lock_file() {
        assert!(workspace_root().join("Cargo.lock").exists());
    }
}
