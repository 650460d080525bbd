//! The second view of the comparison dataset: `user_embedding`, one 64-dim float32 vector per
//! user, next to [`Dataset`]'s `user_stats`.
//!
//! Like `user_stats`, every vector is a pure function of `(seed, entity index, now)`, so any
//! system's answer can be checked later without keeping the dataset in memory.

use quiver_engine::{Micros, Value, MICROS_PER_SEC};

use crate::dataset::{splitmix_hash, Dataset, EntityRow, MAX_AGE_SECS, USER_STATS, VIEW};

/// The embedding view.
pub(crate) const EMBEDDING_VIEW: &str = "user_embedding";
/// Its one feature.
pub(crate) const EMBEDDING_FEATURE: &str = "embedding";
/// Components per vector, as `examples/registry.toml` declares.
pub(crate) const EMBEDDING_DIM: usize = 64;

/// Salt so the embedding streams are unrelated to the `user_stats` ones.
const SALT: u64 = 0x656d_6265_6464_696e;

/// One user's embedding row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EmbeddingRow {
    /// Event time, microseconds (whole seconds).
    pub(crate) event_ts: Micros,
    /// [`EMBEDDING_DIM`] components in `[-1, 1)`, multiples of 2^-23 (exact in f32).
    pub(crate) vector: Vec<f32>,
}

/// Both views of the comparison dataset.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    /// `user_stats`.
    pub(crate) stats: Dataset,
    seed: u64,
    now_secs: i64,
}

impl Data {
    /// `entities` users, event times within [`MAX_AGE_SECS`] before `now_secs`.
    pub(crate) fn new(seed: u64, entities: u64, now_secs: i64) -> Self {
        Self {
            stats: Dataset::new(seed, entities, now_secs),
            seed,
            now_secs,
        }
    }

    /// Number of users.
    pub(crate) fn entities(&self) -> u64 {
        self.stats.entities()
    }

    /// User `index`'s `user_stats` row.
    pub(crate) fn stats_row(&self, index: u64) -> EntityRow {
        self.stats.row(index)
    }

    /// The `user_stats` row of `user_id`, if it is a user of the dataset.
    pub(crate) fn stats_of(&self, user_id: i64) -> Option<EntityRow> {
        self.stats.index_of(user_id).map(|i| self.stats.row(i))
    }

    /// [`Data::stats_of`] for a user a workload chose to write: one outside the dataset is a
    /// harness bug.
    pub(crate) fn stats_to_write(&self, user_id: i64) -> crate::Result<EntityRow> {
        self.stats_of(user_id).ok_or_else(|| {
            crate::BenchError::InvalidArgument(format!("user {user_id} is not a user"))
        })
    }

    /// User `index`'s embedding.
    pub(crate) fn embedding_row(&self, index: u64) -> EmbeddingRow {
        let mut state = splitmix_hash(self.seed ^ SALT) ^ splitmix_hash(index.wrapping_add(SALT));
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            splitmix_hash(state)
        };
        let age = (next() % MAX_AGE_SECS) as i64;
        let vector = (0..EMBEDDING_DIM)
            .map(|_| {
                // 24 random bits scaled to [-1, 1): exactly representable.
                let bits = (next() >> 40) as i32;
                (bits - (1 << 23)) as f32 / (1 << 23) as f32
            })
            .collect();
        EmbeddingRow {
            event_ts: (self.now_secs - age) * MICROS_PER_SEC,
            vector,
        }
    }

    /// The embedding of `user_id`, if it is a user of the dataset.
    pub(crate) fn embedding_of(&self, user_id: i64) -> Option<EmbeddingRow> {
        self.stats.index_of(user_id).map(|i| self.embedding_row(i))
    }
}

/// The `view:feature` references of a read: the first `features` of `user_stats`, then the
/// embedding if `embedding` is set.
pub(crate) fn feature_refs(features: usize, embedding: bool) -> Vec<String> {
    let mut refs: Vec<String> = USER_STATS[..features]
        .iter()
        .map(|f| format!("{VIEW}:{}", f.name))
        .collect();
    if embedding {
        refs.push(format!("{EMBEDDING_VIEW}:{EMBEDDING_FEATURE}"));
    }
    refs
}

/// What a read asked for, to check its answer against the dataset: the first `features`
/// features of `user_stats`, and the embedding if `embedding`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub(crate) data: &'a Data,
    pub(crate) features: usize,
    pub(crate) embedding: bool,
}

/// What a read of `features` `user_stats` features (plus the embedding) must return for one
/// user: `(event time, value)` per column, in request order; a wrong answer for a user the
/// dataset does not have (the reply named a key nobody asked for).
pub(crate) fn expected(
    data: &Data,
    user_id: i64,
    features: usize,
    embedding: bool,
) -> crate::Result<Vec<(Micros, Value)>> {
    let unknown =
        || crate::BenchError::WrongAnswer(format!("user {user_id} is not in the dataset"));
    let stats = data.stats_of(user_id).ok_or_else(unknown)?;
    let mut out: Vec<(Micros, Value)> = stats
        .values
        .into_iter()
        .take(features)
        .map(|v| (stats.event_ts, v))
        .collect();
    if embedding {
        let e = data.embedding_of(user_id).ok_or_else(unknown)?;
        out.push((e.event_ts, Value::Vector(e.vector)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_distinct_and_in_range() {
        let now = 1_700_000_000;
        let (a, b) = (Data::new(42, 100, now), Data::new(42, 100, now));
        let other_seed = Data::new(43, 100, now);
        for i in 0..100 {
            let (x, y) = (a.embedding_row(i), b.embedding_row(i));
            assert_eq!(x, y);
            assert_eq!(x.vector.len(), EMBEDDING_DIM);
            assert!(x.vector.iter().all(|c| (-1.0..1.0).contains(c)));
            let age = now * MICROS_PER_SEC - x.event_ts;
            assert!((0..MAX_AGE_SECS as i64 * MICROS_PER_SEC).contains(&age));
            assert_ne!(x.vector, other_seed.embedding_row(i).vector);
        }
        assert_ne!(a.embedding_row(0).vector, a.embedding_row(1).vector);
        assert!(a.embedding_of(100).is_none());
        assert!(a.embedding_of(-1).is_none());
    }

    #[test]
    fn expected_lists_request_columns_in_order() {
        let d = Data::new(1, 10, 1_700_000_000);
        let e = expected(&d, 3, 20, true).unwrap();
        assert_eq!(e.len(), 21);
        assert_eq!(e[0].1, d.stats_row(3).values[0]);
        assert!(matches!(&e[20].1, Value::Vector(v) if v.len() == EMBEDDING_DIM));
        assert_eq!(feature_refs(2, true).len(), 3);
        assert_eq!(feature_refs(2, false)[1], "user_stats:txn_count_24h");
        assert!(expected(&d, 10, 20, false).is_err());
    }
}
