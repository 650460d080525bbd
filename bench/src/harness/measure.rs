//! Two in-process systems under test measured side by side: both read the same key sequence
//! in alternating time slices, so a noisy neighbour on a shared machine hits both alike, and
//! both are checked against the dataset before and after anything is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use quiver_engine::{Entity, GetResult, KeyBatch, KeyPart};

use crate::dataset::{Dataset, EntityRow};
use crate::harness::check::{check_columns, stats_column};
use crate::harness::report::{Latency, Results, Summary};
use crate::keys::{Dist, KeyChooser, KeySpace};
use crate::Result;

/// Seed salts, so the key streams of different phases are unrelated.
const SALT_VALIDATE: u64 = 0x7661_6c69;
const SALT_WARMUP: u64 = 0x7761_726d;
const SALT_MEASURE: u64 = 0x6d65_6173;

/// Entities whose every value is compared with the dataset before anything is timed.
const VALIDATION_SAMPLE: u64 = 20_000;

/// Measurements alternate between the systems in this many slices each.
const SLICES: u32 = 6;

/// Warm-up per system and distribution: a third of the measurement, at most this.
const MAX_WARMUP: Duration = Duration::from_secs(1);

/// A system under test: answers one batch of user ids and says how long that took.
pub(crate) trait System {
    /// Serves `ids`, returning the time it took.
    fn batch(&mut self, ids: &[i64]) -> Result<Duration>;
    /// Checks the last batch's answer against the dataset.
    fn check(&self, ids: &[i64], dataset: &Dataset) -> Result<()>;
}

/// How a measurement runs: batch size, time and batch budget, seed of the key streams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Entities per get.
    pub(crate) batch: usize,
    /// Seconds per measurement and system.
    pub(crate) duration: f64,
    /// Most batches per measurement and system.
    pub(crate) iterations: u64,
    /// Seed of the key sequences.
    pub(crate) seed: u64,
}

/// What a get of `user_id` must return (`None`: not found).
type Expect<'a> = &'a dyn Fn(i64) -> Option<EntityRow>;

/// The engine. `get` is a batched get (`Store::get`, `Db::get`) with its selection and read
/// options bound in a closure. By default the first `features` features of `user_stats` are
/// selected and checked against the measured dataset; [`EngineSystem::expecting`] checks
/// another view.
pub(crate) struct EngineSystem<'a, F> {
    name: &'static str,
    get: F,
    entity: Entity,
    features: usize,
    column: fn(usize) -> &'static str,
    expect: Option<Expect<'a>>,
    keys: KeyBatch,
    out: GetResult,
}

impl<'a, F> EngineSystem<'a, F> {
    /// A system called `name` in reports, reading batches of up to `batch` keys.
    pub(crate) fn new(
        name: &'static str,
        get: F,
        entity: Entity,
        features: usize,
        batch: usize,
    ) -> Self {
        Self {
            name,
            get,
            entity,
            features,
            column: stats_column,
            expect: None,
            keys: KeyBatch::with_capacity(batch, 9),
            out: GetResult::new(),
        }
    }

    /// Checks answers against `expect`, naming column `j` `column(j)`.
    pub(crate) fn expecting(
        mut self,
        column: fn(usize) -> &'static str,
        expect: Expect<'a>,
    ) -> Self {
        self.column = column;
        self.expect = Some(expect);
        self
    }
}

impl<F> System for EngineSystem<'_, F>
where
    F: FnMut(&KeyBatch, &mut GetResult) -> quiver_engine::Result<()>,
{
    /// The timed work of an engine batch: encoding the keys of `ids` and one batched get.
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        let start = Instant::now();
        self.keys.clear();
        for &id in ids {
            self.keys.push(&self.entity, &[KeyPart::Int64(id)])?;
        }
        (self.get)(&self.keys, &mut self.out)?;
        let took = start.elapsed();
        black_box(&self.out);
        Ok(took)
    }

    fn check(&self, ids: &[i64], dataset: &Dataset) -> Result<()> {
        let (out, n, column) = (&self.out, self.features, self.column);
        match self.expect {
            Some(expect) => check_columns(self.name, out, ids, n, column, expect),
            None => check_columns(self.name, out, ids, n, column, |id| {
                dataset.index_of(id).map(|i| dataset.row(i))
            }),
        }
    }
}

/// Reads a sample of entities (including the first and the last, and some that were never
/// written) through both systems and compares every value with the dataset. Returns how many
/// entities were compared per system.
pub(crate) fn validate(
    systems: [&mut dyn System; 2],
    dataset: &Dataset,
    space: &KeySpace,
    plan: &Plan,
) -> Result<u64> {
    let n = dataset.entities();
    let batch = plan.batch;
    let mut chooser = space.chooser(Dist::Uniform, plan.seed ^ SALT_VALIDATE);
    let (mut idx, mut ids) = (Vec::new(), Vec::new());
    let mut checked = 0u64;
    let sample = VALIDATION_SAMPLE.min(n).max(batch as u64);
    let [a, b] = systems;
    let mut both = |ids: &[i64]| -> Result<()> {
        for s in [&mut *a, &mut *b] {
            s.batch(ids)?;
            s.check(ids, dataset)?;
        }
        Ok(())
    };
    while checked < sample {
        chooser.fill(&mut idx, batch);
        ids.clear();
        ids.extend(idx.iter().map(|&i| dataset.user_id(i)));
        if checked == 0 {
            ids[0] = dataset.user_id(0);
            if let Some(last) = ids.last_mut() {
                *last = dataset.user_id(n - 1);
            }
        }
        both(&ids)?;
        checked += ids.len() as u64;
    }
    // Users that were never written must come back NotFound, not as someone else's values.
    ids.clear();
    ids.extend((0..batch as i64).map(|i| n as i64 + i));
    ids[0] = -1;
    both(&ids)?;
    Ok(checked)
}

/// One system's side of a measurement.
struct Lane<'s, 'k> {
    system: &'s mut dyn System,
    keys: KeyChooser<'k>,
    idx: Vec<u64>,
    ids: Vec<i64>,
    latency: Latency,
    spent: Duration,
    batches: u64,
}

impl<'k> Lane<'_, 'k> {
    /// Runs batches of keys from `keys` (the lane's own unless given) for up to `time` or
    /// `max_batches`, recording each batch's latency if `record`. Returns the wall time spent
    /// and the batches run; `ids` is left holding the last batch.
    fn run(
        &mut self,
        keys: Option<&mut KeyChooser<'k>>,
        dataset: &Dataset,
        batch: usize,
        time: Duration,
        max_batches: u64,
        record: bool,
    ) -> Result<(Duration, u64)> {
        let keys = match keys {
            Some(k) => k,
            None => &mut self.keys,
        };
        let start = Instant::now();
        let mut done = 0;
        while done < max_batches && start.elapsed() < time {
            keys.fill(&mut self.idx, batch);
            self.ids.clear();
            self.ids
                .extend(self.idx.iter().map(|&i| dataset.user_id(i)));
            let took = self.system.batch(&self.ids)?;
            if record {
                self.latency.record(took);
            }
            done += 1;
        }
        Ok((start.elapsed(), done))
    }
}

/// Warms both systems up, then measures them in alternating slices on the same key sequence
/// until each has run for the plan's duration or batch budget, and checks the last answer
/// of each. `names` label the progress line.
pub(crate) fn measure(
    systems: [&mut dyn System; 2],
    names: [&str; 2],
    dataset: &Dataset,
    space: &KeySpace,
    dist: Dist,
    plan: &Plan,
) -> Result<(Summary, Summary)> {
    let total = Duration::from_secs_f64(plan.duration);
    let warmup = (total / 3).min(MAX_WARMUP);
    let slice = (total / SLICES).max(Duration::from_millis(1));
    let seed = plan.seed ^ SALT_MEASURE ^ dist as u64;
    let mut lanes = Vec::with_capacity(2);
    for system in systems {
        lanes.push(Lane {
            system,
            keys: space.chooser(dist, seed),
            idx: Vec::with_capacity(plan.batch),
            ids: Vec::with_capacity(plan.batch),
            latency: Latency::new()?,
            spent: Duration::ZERO,
            batches: 0,
        });
    }
    for l in &mut lanes {
        let mut keys = space.chooser(dist, plan.seed ^ SALT_WARMUP);
        l.run(
            Some(&mut keys),
            dataset,
            plan.batch,
            warmup,
            plan.iterations,
            false,
        )?;
    }
    let busy = |l: &Lane<'_, '_>| l.spent < total && l.batches < plan.iterations;
    while lanes.iter().any(busy) {
        for l in &mut lanes {
            if !busy(l) {
                continue;
            }
            let (time, budget) = (slice.min(total - l.spent), plan.iterations - l.batches);
            let (spent, batches) = l.run(None, dataset, plan.batch, time, budget, true)?;
            l.spent += spent;
            l.batches += batches;
        }
    }
    for l in &lanes {
        l.system.check(&l.ids, dataset)?;
    }
    let [es, bs] = [lanes[0].latency.summary(), lanes[1].latency.summary()];
    eprintln!(
        "  {} p50 {:.2} µs over {} batches, {} p50 {:.2} µs over {} batches",
        names[0], es.p50_us, es.count, names[1], bs.p50_us, bs.count
    );
    Ok((es, bs))
}

/// Measures the two systems alternately for each of `dists`.
pub(crate) fn measure_each(
    mut systems: [&mut dyn System; 2],
    names: [&str; 2],
    dataset: &Dataset,
    space: &KeySpace,
    dists: &[Dist],
    plan: &Plan,
) -> Result<Results> {
    let mut results = Vec::new();
    for &dist in dists {
        eprintln!(
            "measuring {} keys: {:.1} s per system",
            dist.name(),
            plan.duration
        );
        let [a, b] = &mut systems;
        let (e, base) = measure([&mut **a, &mut **b], names, dataset, space, dist, plan)?;
        results.push((dist, e, base));
    }
    Ok(results)
}
