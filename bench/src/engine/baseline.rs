//! The raw baseline both engine paths are measured against: a `HashMap<u64, Vec<f32>>` of the
//! same entities, from which each get copies the asked values into an output buffer.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::dataset::{baseline_value, Data, Dataset, EMBEDDING_DIM};
use crate::harness::measure::System;
use crate::{BenchError, Result};

/// The baseline's hash for `u64` keys: one folded 64×64→128-bit multiply (the core of
/// foldhash, which the engine uses), so the baseline is not slowed down by SipHash.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FoldBuild;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FoldHasher(u64);

impl BuildHasher for FoldBuild {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(0x243f_6a88_85a3_08d3)
    }
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let m = u128::from(x ^ self.0) * u128::from(0x5851_f42d_4c95_7f2d_u64);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// Values by user id.
pub(crate) type BaselineMap = HashMap<u64, Vec<f32>, FoldBuild>;

/// Every entity's 20 `user_stats` values as `f32`, keyed by user id.
pub(crate) fn baseline_map(dataset: &Dataset) -> BaselineMap {
    map_of(dataset.entities(), |i| {
        let r = dataset.row(i);
        (r.user_id, r.values.iter().map(baseline_value).collect())
    })
}

/// Every entity's embedding, keyed by user id.
pub(crate) fn embedding_map(data: &Data) -> BaselineMap {
    map_of(data.entities(), |i| {
        (data.stats.user_id(i), data.embedding_row(i).vector)
    })
}

fn map_of(n: u64, entry: impl Fn(u64) -> (i64, Vec<f32>)) -> BaselineMap {
    let mut map = BaselineMap::with_capacity_and_hasher(n as usize, FoldBuild);
    for i in 0..n {
        let (id, values) = entry(i);
        map.insert(id as u64, values);
    }
    map
}

/// What the baseline must copy for `user_id` (`None`: not found, all NaN).
type Want<'a> = Box<dyn Fn(i64) -> Option<Vec<f32>> + 'a>;

/// The raw baseline: a hash map lookup and a copy of `width` values per entity.
pub(crate) struct BaselineSystem<'a> {
    map: &'a BaselineMap,
    width: usize,
    want: Want<'a>,
    out: Vec<f32>,
}

impl<'a> BaselineSystem<'a> {
    /// The first `features` values of `user_stats`, as `dataset` has them.
    pub(crate) fn stats(
        map: &'a BaselineMap,
        dataset: &'a Dataset,
        features: usize,
        batch: usize,
    ) -> Self {
        let want = move |id: i64| {
            let row = dataset.row(dataset.index_of(id)?);
            Some(row.values[..features].iter().map(baseline_value).collect())
        };
        Self::new(map, features, Box::new(want), batch)
    }

    /// The 64 embedding components, as `data` has them.
    pub(crate) fn embedding(map: &'a BaselineMap, data: &'a Data, batch: usize) -> Self {
        let want = |id: i64| data.embedding_of(id).map(|e| e.vector);
        Self::new(map, EMBEDDING_DIM, Box::new(want), batch)
    }

    fn new(map: &'a BaselineMap, width: usize, want: Want<'a>, batch: usize) -> Self {
        Self {
            map,
            width,
            want,
            out: vec![0.0; batch * width],
        }
    }
}

impl System for BaselineSystem<'_> {
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        let n = self.width;
        let start = Instant::now();
        self.out.resize(ids.len() * n, 0.0);
        for (dst, &id) in self.out.chunks_exact_mut(n).zip(ids) {
            match self.map.get(&(id as u64)) {
                Some(v) => dst.copy_from_slice(&v[..n]),
                None => dst.fill(f32::NAN),
            }
        }
        let took = start.elapsed();
        black_box(&self.out);
        Ok(took)
    }

    fn check(&self, ids: &[i64], _: &Dataset) -> Result<()> {
        let n = self.width;
        for (got, &id) in self.out.chunks_exact(n).zip(ids) {
            let want = (self.want)(id).unwrap_or_else(|| vec![f32::NAN; n]);
            if got
                .iter()
                .zip(&want)
                .any(|(g, w)| g.to_bits() != w.to_bits())
            {
                return Err(BenchError::WrongAnswer(format!(
                    "baseline: user {id}: got {got:?}, expected {want:?}"
                )));
            }
        }
        Ok(())
    }
}
