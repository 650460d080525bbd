//! How a workload talks to servers: the server processes it starts, the clients of each
//! system (Quiver's native gRPC API, Redis in either layout), and the closed-loop runner that
//! drives them all with the same key sequences.
//!
//! # Layout
//! - `procs`: the server processes (the `quiver` binary, `redis-server`), free ports, cleanup.
//! - `resp`: a minimal pipelining Redis client.
//! - `layout`: Feast's Redis layout (murmur3 field names, serialized keys and values) and the
//!   packed-blob best case.
//! - `redis`: Redis requests in either layout, and the checks of their answers.
//! - `native`: Quiver requests, answer checks, snapshot files for bulk loads.
//! - `runner`: the closed-loop (and paced) client runner shared by every system.

pub(crate) mod layout;
pub(crate) mod native;
pub(crate) mod procs;
pub(crate) mod raw;
pub(crate) mod redis;
pub(crate) mod resp;
pub(crate) mod runner;

use std::future::Future;
use std::path::PathBuf;

use quiver_engine::Registry;

use crate::dataset::{check_registry, Data, REGISTRY_TOML};
use crate::error::io;
use crate::{BenchError, Result};
use quiver_testkit::TempDir;

/// Writes the bundled registry into `work` for servers to start from; returns its path and
/// the registry, checked against the dataset generator.
pub(crate) fn write_registry(work: &TempDir) -> Result<(PathBuf, Registry)> {
    let path = work.join("registry.toml");
    std::fs::write(&path, REGISTRY_TOML).map_err(io("writing the registry"))?;
    let registry = Registry::from_toml(REGISTRY_TOML)?;
    check_registry(&registry)?;
    Ok((path, registry))
}

/// [`native::build_snapshots`] under `work`, on a blocking thread.
pub(crate) async fn build_snapshots(
    work: &TempDir,
    registry: &Registry,
    data: &Data,
    with_embedding: bool,
) -> Result<native::Snapshots> {
    let (dir, reg, d) = (work.path().to_path_buf(), registry.clone(), data.clone());
    tokio::task::spawn_blocking(move || native::build_snapshots(&dir, &reg, &d, with_embedding))
        .await
        .map_err(|e| BenchError::other("the snapshot builder", e.to_string()))?
}

/// Runs `f` on a runtime of `threads` workers, stopping early on Ctrl-C or SIGTERM. Either
/// way `f` is dropped before this returns, and with it every server guard: child processes
/// are killed and scratch directories removed.
pub(crate) fn block_on(threads: usize, f: impl Future<Output = Result<()>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(io("starting the client runtime"))?;
    rt.block_on(async {
        tokio::select! {
            r = f => r,
            () = quiver_server::shutdown_signal() => Err(BenchError::Io {
                what: "interrupted by SIGINT or SIGTERM; servers stopped, scratch directories \
                       removed"
                    .into(),
                source: std::io::Error::from(std::io::ErrorKind::Interrupted),
            }),
        }
    })
}
