//! Quiver's benchmark harness: a deterministic dataset, key distributions, workloads, and
//! reports that put every figure next to a baseline measured in the same run.
//!
//! # Layout
//! The core, which every workload imports and no workload is imported by:
//! - `dataset`: the `user_stats` bench dataset, generated per entity from a seed, and the
//!   `user_embedding` view next to it.
//! - `keys`: which entities a workload asks for: uniform or Zipf-distributed key choice.
//! - `harness`: shared flags, the in-process measurement of two systems, answer checks, a
//!   durable `Db` without background work, report tables and JSON fields.
//! - `clients`: server processes, the clients of Quiver and Redis, the closed-loop runner.
//! - `scratch`: scratch directories removed on drop, filesystem and page-cache helpers.
//! - `mem`: process memory readings (RSS).
//! - `error`: the harness's error type.
//!
//! The workloads, one per subcommand:
//! - `engine`: the in-process engine micro benchmark against a raw `HashMap` baseline, from
//!   the in-memory delta or (`engine --compression`) a compressed base snapshot.
//! - `restart`: open → ready of a data directory holding a snapshot and a WAL (W7).
//! - `load`: building a snapshot, bulk-loading it into a running store (W5), and the
//!   snapshot read path against the in-memory delta.
//! - `write`: durable write throughput and latency with fsync always, 1..64 writers.
//! - `offline`: the point-in-time join against DuckDB's ASOF join, and materialize (W8).
//! - `grpc`: GetOnlineFeatures against the gRPC floor (an echo service).
//! - `overload`: bursts far past `max_concurrent_requests`: answers by code and server memory.
//! - `compare`: Quiver against Redis (Feast layout and packed blobs), W1-W7 and durable writes.
//! - `feast`: what a Feast user runs (feast serve, FeatureStore, training sets) on Redis and on
//!   the Quiver plugin, and the Python client against the Rust one (a Python script does the
//!   Feast side).

mod clients;
mod compare;
mod dataset;
mod engine;
mod error;
mod feast;
mod grpc;
mod harness;
mod keys;
mod load;
mod mem;
mod offline;
mod overload;
mod restart;
mod scratch;
mod write;

pub use compare::{run_compare, CompareArgs, WorkloadId};
pub use dataset::{
    baseline_value, check_registry, Dataset, EntityRow, FeatureSpec, MAX_AGE_SECS, REGISTRY_TOML,
    USER_STATS, VIEW,
};
pub use engine::{run_engine, CompressionArg, EngineArgs, ViewArg};
pub use error::{BenchError, Result};
pub use feast::{run_feast, FeastArgs};
pub use grpc::{run_echo, run_grpc, EchoArgs, GrpcArgs};
pub use harness::args::{DbArgs, DistArg, ServerArgs};
pub use harness::report::{median, Latency, Summary, Table};
pub use keys::{Dist, KeyChooser, KeySpace, Zipf, ZIPF_THETA};
pub use load::{run_load, LoadArgs};
pub use mem::rss_bytes;
pub use offline::{run_offline, OfflineArgs, Worker as OfflineWorker};
pub use overload::{run_overload, OverloadArgs};
pub use restart::{run_restart, RestartArgs};
pub use scratch::{bytes_under, drop_from_page_cache, filesystem_of, scratch_dir};
pub use write::{run_write, WriteArgs};
