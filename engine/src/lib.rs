//! Quiver's storage engine.
//!
//! # Layout
//! - `registry`: entities, feature views, services; TOML parsing, validation, evolution.
//! - `value`: feature types, owned [`Value`]s for writes, columnar results for reads.
//! - `key`: canonical entity key encoding and [`KeyBatch`].
//! - `record`: the compact per-(view, entity) record codec.
//! - `store`: sharded in-memory maps per view, last-write-wins writes, batched gets with
//!   per-feature TTL, the background reclaimer and memory accounting.
//! - `clock`: injected time.
//! - `codec`: varints and other shared encoding helpers.

#![deny(unsafe_code)]

mod clock;
mod codec;
mod error;
mod key;
mod record;
mod registry;
mod store;
mod value;

pub use clock::{Clock, ManualClock, Micros, SystemClock, MICROS_PER_SEC};
pub use error::{EngineError, Result};
pub use key::{decode_key, encode_key, KeyBatch, KeyPart, OwnedKeyPart, MAX_KEY_LEN};
pub use registry::{
    parse_ttl, Entity, Feature, FeatureRef, FeatureService, FeatureView, JoinKey, KeyType,
    OfflineSource, Registry, RegistryError,
};
pub use store::{
    GetResult, ReadOptions, ReclaimStats, Reclaimer, Row, Store, StoreConfig, ViewStats,
};
pub use value::{ColumnData, FeatureColumn, ScalarType, Status, Value, ValueType, VarColumn};
