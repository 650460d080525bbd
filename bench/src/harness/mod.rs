//! The harness core every workload builds on; workloads import from here and never from each
//! other.
//!
//! # Layout
//! - `args`: the flags several subcommands share (flattened into each), and argument checks.
//! - `measure`: the [`System`](measure::System) trait of an in-process system under test, and
//!   the alternating-slice measurement of two of them.
//! - `check`: rows as engine writes, and the check of a get's answer against the dataset.
//! - `db`: a durable [`Db`](quiver_engine::Db) without background work, snapshot building,
//!   and a reader that checks what a `Db` serves.
//! - `report`: latency histograms, the printed table and the JSON fields every report shares.
//! - `host`: wall-clock time and the load average.

pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod db;
pub(crate) mod host;
pub(crate) mod measure;
pub(crate) mod placement;
pub(crate) mod report;
