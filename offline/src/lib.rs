//! Quiver's offline module: feature history in Parquet, point-in-time-correct training sets
//! and materialization into engine snapshots.
//!
//! Not built yet: this crate reserves its place in the workspace (see the open issue for the
//! offline module). It re-exports the engine types the offline side shares with serving, so
//! both use one definition of the registry.

#![deny(unsafe_code)]

pub use quiver_engine::{FeatureView, Registry};
