//! What the engine's unit tests share: a temporary directory, a fixed clock origin, the
//! schemas several of them build on, and the few steps every store test takes.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::clock::ManualClock;
use crate::key::{encode_key, KeyPart};
use crate::registry::{Entity, Registry};
use crate::store::{Store, StoreConfig};
use crate::value::Value;

pub(crate) use quiver_testkit::TempDir;

/// The tests' "now" (2023-11-14), in microseconds since the epoch.
pub(crate) const T0: i64 = 1_700_000_000_000_000;
/// A minute, in microseconds.
pub(crate) const MINUTE: i64 = 60 * 1_000_000;
/// An hour, in microseconds.
pub(crate) const HOUR: i64 = 60 * MINUTE;

/// Entity `u` keyed by an int64 `id`, and view `v` of it: `a` (int64, 1 h TTL) and `b`
/// (string), with no view TTL. Tests append features to it, so it ends with `b`.
pub(crate) const SMALL_SCHEMA: &str = include_str!("../testdata/small.toml");

/// View `name` of `entity` with a 1 h TTL and a feature of each kind the store handles apart:
/// `count` (int64, 10 min TTL), `ratio` (float32), `flag` (bool), `name` (string, never
/// expires), `hist` (list<int32>), `emb` (vector<2>), `seen` (timestamp, 3 h TTL).
pub(crate) fn mixed_view(name: &str, entity: &str) -> String {
    // A leading newline keeps it apart from whatever it is appended to.
    let text = include_str!("../testdata/mixed-view.toml");
    format!(
        "\n{}",
        text.replace("\"NAME\"", &format!("{name:?}"))
            .replace("\"ENTITY\"", &format!("{entity:?}"))
    )
}

/// The registry of a schema the test wrote (and knows to be valid).
pub(crate) fn registry(toml: &str) -> Registry {
    Registry::from_toml(toml).unwrap()
}

/// An in-memory store of `toml`'s registry on `shards` shards, reading time from `clock`.
pub(crate) fn store_of(toml: &str, shards: usize, clock: &ManualClock) -> Store {
    Store::new(
        registry(toml),
        StoreConfig { shards },
        Arc::new(clock.clone()),
    )
    .unwrap()
}

/// The encoded key of an entity with a single int64 join key.
pub(crate) fn int_key(entity: &Entity, id: i64) -> Vec<u8> {
    let mut k = Vec::new();
    encode_key(entity, &[KeyPart::Int64(id)], &mut k).unwrap();
    k
}

/// A random value of `ty` for the model-based tests: one in eight null, edge cases (zero,
/// `i64::MIN`, NaN) among the ordinary ones. Only the types the mixed view uses.
pub(crate) fn random_value(rng: &mut SmallRng, ty: crate::ValueType) -> Value {
    use crate::{ScalarType as S, ValueType as T};
    if rng.random_ratio(1, 8) {
        return Value::Null;
    }
    match ty {
        T::Scalar(S::Int64) => Value::Int64(match rng.random_range(0..4) {
            0 => 0,
            1 => i64::MIN,
            _ => rng.random_range(-1000..1000),
        }),
        T::Scalar(S::Float32) => Value::Float32(if rng.random_ratio(1, 10) {
            f32::NAN
        } else {
            rng.random()
        }),
        T::Scalar(S::Float64) => Value::Float64(rng.random()),
        T::Scalar(S::Bool) => Value::Bool(rng.random()),
        T::Scalar(S::String) => {
            let n = rng.random_range(0..20);
            Value::String((0..n).map(|_| rng.random_range('a'..='z')).collect())
        }
        T::List(S::Int32) => {
            let n = rng.random_range(0..5);
            Value::Int32List((0..n).map(|_| rng.random()).collect())
        }
        T::Vector { dim } => Value::Vector((0..dim).map(|_| rng.random()).collect()),
        T::Scalar(S::Timestamp) => Value::Timestamp(rng.random()),
        other => panic!("the model does not generate {other}"),
    }
}

/// Checks row `r` of a result column against the model's cell: `expected` is the visible
/// write (event time and value) or None for never written; a write older than `oldest`
/// (the TTL or max-age bound, if any) must read as outside max age.
pub(crate) fn check_cell(
    col: &crate::value::FeatureColumn,
    r: usize,
    expected: Option<(i64, &Value)>,
    oldest: Option<i64>,
    ctx: &str,
) {
    use crate::value::Status;
    let Some((ts, value)) = expected else {
        assert_eq!(col.statuses[r], Status::NotFound, "{ctx}");
        return;
    };
    assert_eq!(col.event_ts[r], ts, "{ctx}");
    if oldest.is_some_and(|o| ts < o) {
        assert_eq!(col.statuses[r], Status::OutsideMaxAge, "{ctx}");
    } else if *value == Value::Null {
        assert_eq!(col.statuses[r], Status::NullValue, "{ctx}");
    } else {
        assert_eq!(col.statuses[r], Status::Present, "{ctx}");
        let got = col.values.value_at(r);
        assert!(got.bit_eq(value), "{ctx}: {got:?} != {value:?}");
    }
}
