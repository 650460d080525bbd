//! Quiver's offline module: feature history in Parquet, point-in-time-correct training sets
//! and materialization into engine snapshots — with the same semantics as online reads
//! (docs/semantics.md), which the parity test checks.
//!
//! # Layout
//! - `history`: a view's Parquet history (file or directory), validated against the registry,
//!   read by row group with projection, row selection and time-range pruning.
//! - `join`: the point-in-time join and training-set files (how it stays parallel and
//!   memory-bounded is documented there); `join::slots` is its cache-conscious core.
//! - `materialize`: latest row per entity in a time window → snapshot file / data directory
//!   (or, incrementally, through the engine's write path).
//! - `types`: registry types ⇄ Arrow types (canonical output types, accepted input types).
//! - `keys`: join key columns → canonical engine keys.
//! - `parallel`: scoped worker threads and the terminal progress line.
//! - `state`: the end time of each view's last materialization, for `--incremental`.
//! - `time`: command-line times: parsing what people type, RFC 3339 printing.
//! - `error`: [`OfflineError`].

mod error;
mod history;
mod join;
mod keys;
mod materialize;
mod parallel;
mod state;
mod time;
mod types;

pub use error::{OfflineError, Result};
pub use history::History;
pub use join::{
    join_batch, read_parquet, write_parquet, write_training_set, FeaturePlan, JoinOptions,
    TrainingSummary,
};
pub use materialize::{
    latest_rows, materialize_into_db, materialize_rows_into_db, materialize_snapshot,
    MaterializeOptions, MaterializeSummary, FETCH_CHUNK, WRITE_BATCH,
};
pub use state::{last_materialized, record_materialized};
pub use time::{format_time, parse_time};
pub use types::{arrow_type, value_at, EpochUnit};

pub use quiver_engine::{FeatureView, Registry};
