//! Quiver's benchmark harness (DESIGN.md §8): a deterministic dataset, key distributions,
//! workloads, and reports that put every figure next to a baseline measured in the same run.
//!
//! # Layout
//! - `dataset`: the `user_stats` bench dataset, generated per entity from a seed.
//! - `keys`: which entities a workload asks for: uniform or Zipf-distributed key choice.
//! - `engine`: the in-process engine micro benchmark against a raw `HashMap` baseline.
//! - `report`: latency histograms, the printed table and the JSON line.
//! - `mem`: process memory readings (RSS).
//! - `error`: the harness's error type.

#![deny(unsafe_code)]

mod dataset;
mod engine;
mod error;
mod keys;
mod mem;
mod report;

pub use dataset::{
    baseline_value, check_registry, Dataset, EntityRow, FeatureSpec, MAX_AGE_SECS, REGISTRY_TOML,
    USER_STATS, VIEW,
};
pub use engine::{run_engine, DistArg, EngineArgs};
pub use error::{BenchError, Result};
pub use keys::{Dist, KeyChooser, KeySpace, Zipf, ZIPF_THETA};
pub use mem::rss_bytes;
pub use report::{Latency, Summary, Table};
