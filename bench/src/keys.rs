//! Key choice: which entities a workload asks for.
//!
//! Uniform choice touches the whole key space (the cache-hostile case); Zipf(0.99) concentrates
//! traffic on a few hot entities as real request streams do. Zipf ranks are mapped to entities
//! through a seeded permutation, so hot entities are spread over the key space instead of being
//! the first ones loaded (which would sit next to each other in memory).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{BenchError, Result};

/// The Zipf exponent of the skewed key distribution.
pub const ZIPF_THETA: f64 = 0.99;

/// A Zipf sampler over ranks `0..n` with `P(rank k) ∝ 1 / (k + 1)^s`, by rejection-inversion
/// (W. Hörmann, G. Derflinger, "Rejection-inversion to generate variates from monotone discrete
/// distributions", 1996): O(1) time and memory per sample, no table, exact for every `n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    /// A sampler over `n ≥ 1` ranks with exponent `s > 0`.
    pub fn new(n: u64, s: f64) -> Result<Self> {
        if n == 0 || s.is_nan() || s <= 0.0 {
            return Err(BenchError::InvalidArgument(format!(
                "Zipf needs n ≥ 1 and s > 0, got n = {n}, s = {s}"
            )));
        }
        let mut z = Self {
            n,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(n as f64 + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        Ok(z)
    }

    /// Number of ranks.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether there are no ranks (never: `new` refuses `n = 0`).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// A rank in `0..n`; rank 0 is the most frequent.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        loop {
            let u =
                self.h_integral_n + rng.random::<f64>() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            // `x` is at least about 0.5, so the cast floors a positive number.
            let k = ((x + 0.5) as u64).clamp(1, self.n);
            let kf = k as f64;
            if kf - x <= self.threshold || u >= self.h_integral(kf + 0.5) - self.h(kf) {
                return k - 1;
            }
        }
    }

    /// `h(x) = x^-s`.
    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// An antiderivative of `h`, written to stay exact as `s → 1`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// A key distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Every entity equally likely.
    Uniform,
    /// Zipf with exponent [`ZIPF_THETA`], hot entities scattered over the key space.
    Zipf,
}

impl Dist {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Zipf => "zipf",
        }
    }
}

/// The entity indices `0..n` a workload draws from, with what every distribution needs.
#[derive(Debug)]
pub struct KeySpace {
    zipf: Zipf,
    /// Zipf rank → entity index.
    rank_to_entity: Vec<u32>,
}

impl KeySpace {
    /// A key space of `n` entities (at most 2^32); the rank permutation is drawn from `seed`.
    pub fn new(n: u64, seed: u64) -> Result<Self> {
        let count = u32::try_from(n).map_err(|_| {
            BenchError::InvalidArgument(format!("at most {} entities, got {n}", u32::MAX))
        })?;
        let zipf = Zipf::new(n, ZIPF_THETA)?;
        let mut rank_to_entity: Vec<u32> = (0..count).collect();
        let mut rng = SmallRng::seed_from_u64(seed);
        for i in (1..rank_to_entity.len()).rev() {
            let j = rng.random_range(0..=i);
            rank_to_entity.swap(i, j);
        }
        Ok(Self {
            zipf,
            rank_to_entity,
        })
    }

    /// Number of entities.
    pub fn len(&self) -> u64 {
        self.rank_to_entity.len() as u64
    }

    /// Whether the space is empty (never: `new` refuses `n = 0`).
    pub fn is_empty(&self) -> bool {
        self.rank_to_entity.is_empty()
    }

    /// A stream of entity indices under `dist`. Two choosers with the same `dist` and `seed`
    /// yield the same sequence, which is how systems are given identical requests.
    pub fn chooser(&self, dist: Dist, seed: u64) -> KeyChooser<'_> {
        KeyChooser {
            space: self,
            dist,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

/// A seeded stream of entity indices; see [`KeySpace::chooser`].
#[derive(Debug)]
pub struct KeyChooser<'a> {
    space: &'a KeySpace,
    dist: Dist,
    rng: SmallRng,
}

impl KeyChooser<'_> {
    /// The next entity index.
    pub fn next_index(&mut self) -> u64 {
        match self.dist {
            Dist::Uniform => self.rng.random_range(0..self.space.len()),
            Dist::Zipf => {
                let rank = self.space.zipf.sample(&mut self.rng);
                u64::from(self.space.rank_to_entity[rank as usize])
            }
        }
    }

    /// Replaces `out` with the next `count` entity indices.
    pub fn fill(&mut self, out: &mut Vec<u64>, count: usize) {
        out.clear();
        out.extend((0..count).map(|_| self.next_index()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact Zipf probabilities of ranks `0..n`.
    fn pmf(n: u64, s: f64) -> Vec<f64> {
        let w: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    #[test]
    fn zipf_frequencies_follow_the_power_law() {
        for (n, s) in [
            (1000, ZIPF_THETA),
            (50, 1.0),
            (10_000, 0.5),
            (1, ZIPF_THETA),
        ] {
            let z = Zipf::new(n, s).unwrap();
            let mut rng = SmallRng::seed_from_u64(9);
            let draws = 400_000;
            let mut counts = vec![0u64; n as usize];
            for _ in 0..draws {
                let k = z.sample(&mut rng);
                assert!(k < n);
                counts[k as usize] += 1;
            }
            // The head ranks are within 5 standard deviations of their exact probabilities.
            for (k, p) in pmf(n, s).into_iter().enumerate().take(8) {
                let expected = p * draws as f64;
                let sd = (expected * (1.0 - p)).sqrt().max(1.0);
                let got = counts[k] as f64;
                assert!(
                    (got - expected).abs() < 5.0 * sd,
                    "n={n} s={s} rank {k}: {got} vs {expected:.0}"
                );
            }
        }
    }

    #[test]
    fn zipf_is_skewed_where_uniform_is_not() {
        let space = KeySpace::new(100_000, 1).unwrap();
        let mut seen_zipf = std::collections::HashMap::new();
        let mut seen_uniform = std::collections::HashMap::new();
        let (mut zc, mut uc) = (
            space.chooser(Dist::Zipf, 5),
            space.chooser(Dist::Uniform, 5),
        );
        for _ in 0..100_000 {
            *seen_zipf.entry(zc.next_index()).or_insert(0u32) += 1;
            *seen_uniform.entry(uc.next_index()).or_insert(0u32) += 1;
        }
        let top = |m: &std::collections::HashMap<u64, u32>| m.values().copied().max().unwrap();
        // Zipf(0.99) over 1e5 keys puts ~8% of draws on rank 0; uniform a handful on any key.
        assert!(top(&seen_zipf) > 5_000, "{}", top(&seen_zipf));
        assert!(top(&seen_uniform) < 20, "{}", top(&seen_uniform));
        assert!(seen_zipf.len() < seen_uniform.len() / 2);
        // The hottest entity is not simply entity 0: ranks are scattered.
        let hottest = seen_zipf.iter().max_by_key(|e| *e.1).unwrap().0;
        assert_eq!(*hottest, u64::from(space.rank_to_entity[0]));
    }

    #[test]
    fn equal_seeds_give_equal_sequences() {
        let space = KeySpace::new(1000, 3).unwrap();
        for dist in [Dist::Uniform, Dist::Zipf] {
            let (mut a, mut b) = (space.chooser(dist, 11), space.chooser(dist, 11));
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.fill(&mut x, 500);
            b.fill(&mut y, 500);
            assert_eq!(x, y);
            assert!(x.iter().all(|&i| i < 1000));
        }
        let mut sorted = space.rank_to_entity.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &e)| e as usize == i));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipf::new(0, 0.99).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(KeySpace::new(0, 1).is_err());
    }
}
