//! What Quiver's tests and benchmarks share, with nothing but `std`: temporary directories
//! that clean up after themselves, child processes that cannot outlive the harness, and the
//! way to the workspace's binaries.
//!
//! # Layout
//! - `temp`: [`TempDir`], a uniquely named directory removed on drop.
//! - `process`: [`Proc`], a supervised child process logging to a file (start, readiness,
//!   signals, bounded waits, SIGKILL on drop), and [`free_port`].
//! - `binary`: [`workspace_root`] and [`find_or_build`], which locates a binary of this
//!   workspace and builds it first when asked to. Only harnesses that run outside `cargo test`
//!   (the benchmarks) build; tests use the binary cargo built for them.

#![warn(missing_docs)]

mod binary;
mod process;
mod temp;

pub use binary::{find_or_build, workspace_root, Profile};
pub use process::{free_port, Proc, Signal};
pub use temp::TempDir;
