//! Quiver's benchmark harness (DESIGN.md §8): a deterministic dataset, key distributions,
//! workloads, and reports that put every figure next to a baseline measured in the same run.
//!
//! # Layout
//! - `dataset`: the `user_stats` bench dataset, generated per entity from a seed.
//! - `keys`: which entities a workload asks for: uniform or Zipf-distributed key choice.
//! - `engine`: the in-process engine micro benchmark against a raw `HashMap` baseline.
//! - `packed`: the same benchmark against a base snapshot built with a compression policy
//!   (`engine --compression`, issue 7).
//! - `restart`: open → ready of a data directory holding a snapshot and a WAL (W7).
//! - `load`: building a snapshot, bulk-loading it into a running store (W5), and the
//!   snapshot read path against the in-memory delta.
//! - `write`: durable write throughput and latency with fsync always, 1..64 writers.
//! - `durable`: what those three share: the Db configuration, snapshot building, checked reads.
//! - `scratch`: scratch directories removed on drop, filesystem and page-cache helpers.
//! - `report`: latency histograms, the printed table and the JSON line.
//! - `mem`: process memory readings (RSS).
//! - `offline`: the point-in-time join against DuckDB's ASOF join, and materialize (W8).
//! - `grpc`: GetOnlineFeatures against the gRPC floor (an echo service), issue 4.
//! - `overload`: bursts far past `max_concurrent_requests`: answers by code and server memory.
//! - `compare`: Quiver against Redis (Feast layout and packed blobs), issue 5.
//! - `error`: the harness's error type.

mod compare;
mod dataset;
mod durable;
mod engine;
mod error;
mod grpc;
mod keys;
mod load;
mod mem;
mod offline;
mod overload;
mod packed;
mod report;
mod restart;
mod scratch;
mod write;

pub use compare::{run_compare, CompareArgs, WorkloadId};
pub use dataset::{
    baseline_value, check_registry, Dataset, EntityRow, FeatureSpec, MAX_AGE_SECS, REGISTRY_TOML,
    USER_STATS, VIEW,
};
pub use engine::{run_engine, CompressionArg, DistArg, EngineArgs, ViewArg};
pub use error::{BenchError, Result};
pub use grpc::{run_grpc, GrpcArgs};
pub use keys::{Dist, KeyChooser, KeySpace, Zipf, ZIPF_THETA};
pub use load::{run_load, LoadArgs};
pub use mem::rss_bytes;
pub use offline::{run_offline, OfflineArgs, Worker as OfflineWorker};
pub use overload::{run_overload, OverloadArgs};
pub use report::{median, Latency, Summary, Table};
pub use restart::{run_restart, RestartArgs};
pub use scratch::{bytes_under, drop_from_page_cache, filesystem_of, ScratchDir};
pub use write::{run_write, WriteArgs};
