//! The bench dataset: view `user_stats`, 20 features of one `user` entity (and, in `embedding`,
//! view `user_embedding` next to it).
//!
//! Every entity's row is a pure function of `(seed, entity index, now)`, drawn from its own
//! SplitMix64 stream, so rows can be generated in any order, in parallel, or again later to check
//! an answer, without keeping the dataset in memory. SplitMix64 is written here rather than taken
//! from `rand` because `rand` does not promise the same stream across releases, and a benchmark
//! dataset must stay the same dataset.
//!
//! The shapes imitate a fraud/risk view: counters that are mostly zero (zero-inflated
//! geometric), ratios in `[0, 1]`, log-normal money amounts in whole cents, a low-cardinality
//! country code and two booleans. All values of a row share one event timestamp in whole seconds
//! within the last [`MAX_AGE_SECS`], inside every feature's TTL (the shortest is 2 h).

use quiver_engine::{Micros, Registry, ScalarType, Value, ValueType, MICROS_PER_SEC};

use crate::{BenchError, Result};

mod embedding;
pub(crate) use embedding::{
    expected, feature_refs, Data, EmbeddingRow, Expected, EMBEDDING_DIM, EMBEDDING_FEATURE,
    EMBEDDING_VIEW,
};

/// The example registry, whose `user_stats` view is the schema of this dataset.
pub const REGISTRY_TOML: &str = include_str!("../../../examples/registry.toml");

/// The view the dataset fills.
pub const VIEW: &str = "user_stats";

/// Oldest event timestamp, in seconds before "now". Below `txn_count_1h`'s 2 h TTL, so a run
/// can last an hour before any generated value expires.
pub const MAX_AGE_SECS: u64 = 3600;

/// How one feature's values are drawn.
#[derive(Debug, Clone, Copy)]
enum Gen {
    /// Zero with probability `zero`, else geometric on 1, 2, ... with mean `mean`.
    Count { zero: f64, mean: f64 },
    /// Zero with probability `zero`, else `scale · u^power` for uniform `u`: a ratio in `[0, 1]`.
    Ratio { zero: f64, power: f64, scale: f64 },
    /// Log-normal `exp(N(mu, sigma))`, in whole cents.
    Amount { mu: f64, sigma: f64 },
    /// The previous feature's amount times `exp(|N(0, sigma)|)`: a maximum above an average.
    AmountAbove { sigma: f64 },
    /// Exponential with mean `mean` days, to the hour.
    AgeDays { mean: f64 },
    /// A weighted ISO 3166 alpha-2 code from [`COUNTRIES`].
    Country,
    /// True with probability `p`.
    Flag { p: f64 },
}

/// One feature of the view: its registry name and type, and how it is generated.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSpec {
    /// Feature name in `user_stats`.
    pub name: &'static str,
    /// Its registry type.
    pub ty: ValueType,
    gen: Gen,
}

const I64: ValueType = ValueType::Scalar(ScalarType::Int64);
const I32: ValueType = ValueType::Scalar(ScalarType::Int32);
const F32: ValueType = ValueType::Scalar(ScalarType::Float32);
const F64: ValueType = ValueType::Scalar(ScalarType::Float64);
const STR: ValueType = ValueType::Scalar(ScalarType::String);
const BOOL: ValueType = ValueType::Scalar(ScalarType::Bool);

const fn spec(name: &'static str, ty: ValueType, gen: Gen) -> FeatureSpec {
    FeatureSpec { name, ty, gen }
}

const fn count(name: &'static str, ty: ValueType, zero: f64, mean: f64) -> FeatureSpec {
    spec(name, ty, Gen::Count { zero, mean })
}

const fn ratio(
    name: &'static str,
    ty: ValueType,
    zero: f64,
    power: f64,
    scale: f64,
) -> FeatureSpec {
    spec(name, ty, Gen::Ratio { zero, power, scale })
}

const fn amount(name: &'static str, ty: ValueType, mu: f64, sigma: f64) -> FeatureSpec {
    spec(name, ty, Gen::Amount { mu, sigma })
}

/// The features of `user_stats` in schema order, as in `examples/registry.toml`.
pub const USER_STATS: [FeatureSpec; 20] = [
    count("txn_count_1h", I64, 0.7, 2.0),
    count("txn_count_24h", I64, 0.4, 8.0),
    count("txn_count_7d", I64, 0.2, 40.0),
    count("txn_count_30d", I64, 0.1, 150.0),
    count("failed_logins_24h", I32, 0.9, 1.5),
    count("chargebacks_90d", I32, 0.97, 1.2),
    count("sessions_7d", I64, 0.15, 12.0),
    count("support_tickets_30d", I32, 0.85, 1.5),
    ratio("click_through_rate", F32, 0.3, 3.0, 1.0),
    ratio("conversion_rate", F32, 0.5, 2.0, 0.6),
    ratio("refund_ratio", F32, 0.8, 2.0, 0.5),
    ratio("weekend_ratio", F32, 0.05, 1.0, 1.0),
    ratio("night_ratio", F32, 0.2, 2.0, 1.0),
    amount("avg_amount_30d", F64, 3.5, 1.0),
    spec("max_amount_30d", F64, Gen::AmountAbove { sigma: 0.7 }),
    amount("total_amount_90d", F64, 6.0, 1.5),
    spec("account_age_days", F64, Gen::AgeDays { mean: 700.0 }),
    spec("country", STR, Gen::Country),
    spec("is_premium", BOOL, Gen::Flag { p: 0.15 }),
    spec("has_2fa", BOOL, Gen::Flag { p: 0.45 }),
];

/// Country codes with relative weights (a long-tailed customer base).
const COUNTRIES: [(&str, u32); 20] = [
    ("US", 280),
    ("IN", 120),
    ("BR", 80),
    ("GB", 70),
    ("DE", 70),
    ("FR", 60),
    ("MX", 50),
    ("CA", 40),
    ("JP", 40),
    ("ES", 30),
    ("IT", 30),
    ("ID", 25),
    ("TR", 20),
    ("NL", 20),
    ("PL", 20),
    ("AU", 20),
    ("KR", 10),
    ("SE", 10),
    ("NG", 10),
    ("AR", 10),
];

/// Checks that `registry`'s `user_stats` view declares exactly [`USER_STATS`] (names, types,
/// order) on a single `int64` join key, so the generator cannot drift from the registry.
pub fn check_registry(registry: &Registry) -> Result<()> {
    let view = registry
        .view(VIEW)
        .ok_or_else(|| BenchError::Schema(format!("the registry has no view {VIEW:?}")))?;
    let declared: Vec<(&str, ValueType)> = view
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.ty))
        .collect();
    let generated: Vec<(&str, ValueType)> = USER_STATS.iter().map(|f| (f.name, f.ty)).collect();
    if declared != generated {
        return Err(BenchError::Schema(format!(
            "view {VIEW:?} declares {declared:?}, the generator makes {generated:?}"
        )));
    }
    let entity = registry
        .view_entity(view)
        .ok_or_else(|| BenchError::Schema(format!("view {VIEW:?} has no entity")))?;
    if entity.join_keys.len() != 1 || entity.join_keys[0].ty != quiver_engine::KeyType::Int64 {
        return Err(BenchError::Schema(format!(
            "entity {:?} must have one int64 join key",
            entity.name
        )));
    }
    Ok(())
}

/// One generated entity: its join key value, event time and one value per feature of
/// [`USER_STATS`], in schema order.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRow {
    /// The `user_id` join key.
    pub user_id: i64,
    /// Event time of every value, microseconds (whole seconds).
    pub event_ts: Micros,
    /// One value per feature, in schema order.
    pub values: Vec<Value>,
}

/// The dataset: `entities` users with dense ids `0..entities`.
#[derive(Debug, Clone)]
pub struct Dataset {
    seed: u64,
    entities: u64,
    now_secs: i64,
}

impl Dataset {
    /// A dataset of `entities` users whose event times lie within [`MAX_AGE_SECS`] before
    /// `now_secs` (Unix seconds).
    pub fn new(seed: u64, entities: u64, now_secs: i64) -> Self {
        Self {
            seed,
            entities,
            now_secs,
        }
    }

    /// Number of entities.
    pub fn entities(&self) -> u64 {
        self.entities
    }

    /// The `user_id` of entity `index`.
    pub fn user_id(&self, index: u64) -> i64 {
        index as i64
    }

    /// The entity index of `user_id`, if it is one of the dataset's users.
    pub fn index_of(&self, user_id: i64) -> Option<u64> {
        u64::try_from(user_id).ok().filter(|&i| i < self.entities)
    }

    /// Entity `index`'s row. Depends only on the seed, the index and "now".
    pub fn row(&self, index: u64) -> EntityRow {
        let mut rng = SplitMix64::for_entity(self.seed, index);
        let age = rng.below(MAX_AGE_SECS) as i64;
        let event_ts = (self.now_secs - age) * MICROS_PER_SEC;
        let mut values = Vec::with_capacity(USER_STATS.len());
        let mut last_amount = 0.0;
        for f in &USER_STATS {
            let v = match f.gen {
                Gen::Count { zero, mean } => {
                    let n = if rng.unit() < zero {
                        0
                    } else {
                        rng.geometric(mean)
                    };
                    if f.ty == I32 {
                        Value::Int32(i32::try_from(n).unwrap_or(i32::MAX))
                    } else {
                        Value::Int64(i64::try_from(n).unwrap_or(i64::MAX))
                    }
                }
                Gen::Ratio { zero, power, scale } => {
                    let r = if rng.unit() < zero {
                        0.0
                    } else {
                        scale * rng.unit().powf(power)
                    };
                    Value::Float32(r as f32)
                }
                Gen::Amount { mu, sigma } => {
                    last_amount = cents((mu + sigma * rng.normal()).exp());
                    Value::Float64(last_amount)
                }
                Gen::AmountAbove { sigma } => {
                    Value::Float64(cents(last_amount * (sigma * rng.normal()).abs().exp()))
                }
                Gen::AgeDays { mean } => {
                    let days = -mean * (1.0 - rng.unit()).ln();
                    Value::Float64((days * 24.0).round() / 24.0)
                }
                Gen::Country => Value::String(country(&mut rng).to_owned()),
                Gen::Flag { p } => Value::Bool(rng.unit() < p),
            };
            values.push(v);
        }
        EntityRow {
            user_id: self.user_id(index),
            event_ts,
            values,
        }
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn country(rng: &mut SplitMix64) -> &'static str {
    let total: u32 = COUNTRIES.iter().map(|c| c.1).sum();
    let mut pick = rng.below(u64::from(total)) as u32;
    for (code, w) in COUNTRIES {
        if pick < w {
            return code;
        }
        pick -= w;
    }
    COUNTRIES[0].0
}

/// How the raw baseline stores a value: one `f32` per feature (the country as its index in
/// the code list), the densest layout a hand-written cache would pick.
pub fn baseline_value(v: &Value) -> f32 {
    match v {
        Value::Bool(b) => f32::from(u8::from(*b)),
        Value::Int32(x) => *x as f32,
        Value::Int64(x) => *x as f32,
        Value::Float32(x) => *x,
        Value::Float64(x) => *x as f32,
        Value::String(s) => COUNTRIES
            .iter()
            .position(|c| c.0 == s)
            .map_or(f32::NAN, |i| i as f32),
        _ => f32::NAN,
    }
}

/// SplitMix64's finalizer: a fixed, well-mixed 64-bit hash of `z` (each step of the stream
/// below, and the keyed draws of the other generators).
pub(crate) fn splitmix_hash(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// An independent stream per entity: the seed and index are mixed, not just added, so
    /// neighbouring entities do not get overlapping streams.
    fn for_entity(seed: u64, index: u64) -> Self {
        let mut s = Self(seed);
        let a = s.next_u64();
        Self(a ^ index.wrapping_mul(Self::GAMMA).rotate_left(17) ^ index)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        splitmix_hash(self.0)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (Lemire's multiply-high; the bias is below 2^-40 for the `n` used).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Geometric on 1, 2, ... with mean `mean` (≥ 1), by inversion.
    fn geometric(&mut self, mean: f64) -> u64 {
        let p = 1.0 / mean.max(1.0);
        if p >= 1.0 {
            return 1;
        }
        let u = 1.0 - self.unit(); // (0, 1]
        1 + (u.ln() / (1.0 - p).ln()).floor() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn rows_are_a_function_of_seed_and_index_only() {
        let a = Dataset::new(42, 1000, NOW);
        let b = Dataset::new(42, 1000, NOW);
        let forward: Vec<EntityRow> = (0..1000).map(|i| a.row(i)).collect();
        let backward: Vec<EntityRow> = (0..1000).rev().map(|i| b.row(i)).collect();
        for (i, row) in forward.iter().enumerate() {
            assert_eq!(row, &backward[999 - i], "entity {i}");
            assert_eq!(row.user_id, i as i64);
        }
        // Another seed is another dataset; neighbouring entities differ.
        let c = Dataset::new(43, 1000, NOW);
        let same = (0..1000)
            .filter(|&i| c.row(i) == forward[i as usize])
            .count();
        assert_eq!(same, 0);
        assert_ne!(forward[0].values, forward[1].values);
        // Pinned values: the dataset must not change silently across releases.
        // (Integers, cents, codes and flags are exact; ratios go through `powf`, whose last bit
        // may differ between math libraries, so they are compared loosely.)
        let r = a.row(7);
        assert_eq!(r, Dataset::new(42, 1, NOW).row(7));
        assert_eq!(r.event_ts, (NOW - 2776) * MICROS_PER_SEC);
        let exact: Vec<&Value> = r
            .values
            .iter()
            .filter(|v| !matches!(v, Value::Float32(_)))
            .collect();
        assert_eq!(
            exact,
            [
                &Value::Int64(0),
                &Value::Int64(0),
                &Value::Int64(90),
                &Value::Int64(104),
                &Value::Int32(0),
                &Value::Int32(0),
                &Value::Int64(10),
                &Value::Int32(0),
                &Value::Float64(18.42),
                &Value::Float64(24.9),
                &Value::Float64(135.86),
                &Value::Float64(120.458_333_333_333_33),
                &Value::String("JP".into()),
                &Value::Bool(false),
                &Value::Bool(true),
            ]
        );
        assert!(matches!(r.values[8], Value::Float32(x) if (x - 0.161_627_4).abs() < 1e-6));
    }

    #[test]
    fn rows_match_the_registry_and_have_the_intended_shapes() {
        let reg = Registry::from_toml(REGISTRY_TOML).unwrap();
        check_registry(&reg).unwrap();
        let ds = Dataset::new(7, 20_000, NOW);
        let mut zeros = [0usize; 20];
        let mut countries = std::collections::HashSet::new();
        for i in 0..ds.entities() {
            let r = ds.row(i);
            assert_eq!(r.event_ts % MICROS_PER_SEC, 0);
            let age = NOW * MICROS_PER_SEC - r.event_ts;
            assert!((0..MAX_AGE_SECS as i64 * MICROS_PER_SEC).contains(&age));
            for (j, (v, f)) in r.values.iter().zip(&USER_STATS).enumerate() {
                assert!(v.fits(f.ty), "{} = {v:?}", f.name);
                assert!(!baseline_value(v).is_nan(), "{} = {v:?}", f.name);
                match v {
                    Value::Int64(0) | Value::Int32(0) => zeros[j] += 1,
                    Value::Int64(x) => assert!(*x > 0),
                    Value::Int32(x) => assert!(*x > 0),
                    Value::Float32(x) => assert!((0.0..=1.0).contains(x), "{}", f.name),
                    Value::Float64(x) => assert!(*x >= 0.0 && x.is_finite()),
                    Value::String(s) => {
                        countries.insert(s.clone());
                    }
                    _ => {}
                }
            }
            let (Value::Float64(avg), Value::Float64(max)) = (&r.values[13], &r.values[14]) else {
                panic!("amounts are float64");
            };
            assert!(max >= avg);
        }
        // Counters are zero-inflated as declared: txn_count_1h is ~70% zeros.
        let share = zeros[0] as f64 / ds.entities() as f64;
        assert!((0.67..0.73).contains(&share), "{share}");
        assert!(zeros[5] > zeros[3]);
        assert!(countries.len() > 10 && countries.len() <= COUNTRIES.len());
    }

    #[test]
    fn a_registry_that_drifted_is_refused() {
        let drifted = REGISTRY_TOML.replace(
            "name = \"refund_ratio\"\n  type = \"float32\"",
            "name = \"refund_ratio\"\n  type = \"float64\"",
        );
        assert_ne!(drifted, REGISTRY_TOML);
        let reg = Registry::from_toml(&drifted).unwrap();
        let err = check_registry(&reg).unwrap_err();
        assert!(err.to_string().contains("refund_ratio"), "{err}");
    }
}
