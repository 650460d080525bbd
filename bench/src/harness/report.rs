//! Latency histograms and report output: a plain-text table for people, one JSON line for tools,
//! and the table rows and JSON fields of a two-system measurement, which several reports share.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value as Json};

use crate::keys::Dist;
use crate::{BenchError, Result};

/// Largest latency recorded exactly (one minute); longer ones are clamped to it.
const MAX_NANOS: u64 = 60_000_000_000;

/// Latencies in nanoseconds, three significant digits (HDR histogram).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Latency {
    /// An empty histogram of 1 ns .. 60 s.
    pub fn new() -> Result<Self> {
        let hist = Histogram::new_with_bounds(1, MAX_NANOS, 3)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        Ok(Self { hist })
    }

    /// Records one measurement.
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Adds every measurement of `other`.
    pub fn add(&mut self, other: &Latency) -> Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| BenchError::Histogram(e.to_string()))
    }

    /// The distribution's key figures.
    pub fn summary(&self) -> Summary {
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            count: self.hist.len(),
            mean_us: self.hist.mean() / 1000.0,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1000.0,
        }
    }
}

/// Key figures of a latency distribution, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of measurements.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest measurement.
    pub max_us: f64,
}

/// `a / b`, or NaN when `b` is zero (printed as such rather than as infinity).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// The median of `xs` (the mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Rounds to three decimals for the JSON line (nanosecond resolution in microseconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A JSON number rounded to three decimals; null if not finite.
pub fn num(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(round3(x))
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A right-aligned plain-text table (the first column left-aligned).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, one line per row, with a rule under the header.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |r: &[String]| {
            let cells: Vec<String> = (0..cols)
                .map(|i| {
                    let c = r.get(i).map_or("", String::as_str);
                    if i == 0 {
                        format!("{c:<w$}", w = width[i])
                    } else {
                        format!("{c:>w$}", w = width[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }
}

/// Per key distribution: (distribution, first system's summary, baseline's summary).
pub(crate) type Results = Vec<(Dist, Summary, Summary)>;

/// How a report states a goal: `met` or `missed`.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

/// The median of `f` over `xs`.
pub fn median_of<T>(xs: &[T], f: impl Fn(&T) -> f64) -> f64 {
    median(&xs.iter().map(f).collect::<Vec<_>>())
}

/// A figure of a latency [`Summary`]: its JSON key (after a report's prefix) and its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat(&'static str, fn(&Summary) -> f64);

impl Stat {
    pub(crate) const P50: Stat = Stat("p50_us", |s| s.p50_us);
    pub(crate) const P99: Stat = Stat("p99_us", |s| s.p99_us);
    pub(crate) const P999: Stat = Stat("p999_us", |s| s.p999_us);
    pub(crate) const MAX: Stat = Stat("max_us", |s| s.max_us);
    pub(crate) const MEAN: Stat = Stat("mean_us", |s| s.mean_us);
    /// Every figure.
    pub(crate) const ALL: [Stat; 5] = [Self::P50, Self::P99, Self::P999, Self::MAX, Self::MEAN];
}

/// A report's JSON object: a `json!` literal of its plain figures, then computed fields
/// (latency figures under a prefix, fields of another object).
#[derive(Debug, Default)]
pub(crate) struct Fields(Map<String, Json>);

impl Fields {
    /// Starts from `value`, a `json!` object.
    pub(crate) fn new(value: Json) -> Self {
        Self::default().extend(value)
    }

    /// Adds every field of `value`, a `json!` object.
    pub(crate) fn extend(mut self, value: Json) -> Self {
        if let Json::Object(m) = value {
            self.0.extend(m);
        }
        self
    }

    /// Adds `{prefix}p50_us` .. for `stats` of `s`, null when it was not measured.
    pub(crate) fn latency(mut self, prefix: &str, s: Option<&Summary>, stats: &[Stat]) -> Self {
        for st in stats {
            let v = s.map_or(Json::Null, |s| num(st.1(s)));
            self.0.insert(format!("{prefix}{}", st.0), v);
        }
        self
    }

    /// Adds one field.
    pub(crate) fn insert(&mut self, key: String, value: Json) {
        self.0.insert(key, value);
    }

    /// The object.
    pub(crate) fn json(self) -> Json {
        Json::Object(self.0)
    }
}

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The one JSON line other tooling reads.
        write!(f, "{}", Json::Object(self.0.clone()))
    }
}

/// The latency table of `results`, the first system's rows labelled `first`.
pub(crate) fn latency_table(results: &Results, first: &str) -> Table {
    let mut t = Table::new([
        "keys",
        "system",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "mean µs",
        "batches",
        "p50 ×base",
        "p99 ×base",
        "p99.9 ×base",
    ]);
    let f = |x: f64| format!("{x:.2}");
    for (dist, e, b) in results {
        for (name, s) in [(first, e), ("baseline", b)] {
            t.row([
                dist.name().to_owned(),
                name.to_owned(),
                f(s.p50_us),
                f(s.p99_us),
                f(s.p999_us),
                f(s.max_us),
                f(s.mean_us),
                s.count.to_string(),
                f(ratio(s.p50_us, b.p50_us)),
                f(ratio(s.p99_us, b.p99_us)),
                f(ratio(s.p999_us, b.p999_us)),
            ]);
        }
    }
    t
}

/// `fields` and the figures of `results`: `engine_*`, `baseline_*` and the ratios, with
/// `zipf_` twins (null when a distribution was not measured).
pub(crate) fn with_results(mut fields: Fields, results: &Results) -> Fields {
    for (dist, prefix) in [(Dist::Uniform, ""), (Dist::Zipf, "zipf_")] {
        let found = results.iter().find(|r| r.0 == dist);
        for (system, s) in [
            ("engine_", found.map(|r| &r.1)),
            ("baseline_", found.map(|r| &r.2)),
        ] {
            let system = format!("{prefix}{system}");
            fields = fields.latency(&system, s, &Stat::ALL);
            fields.insert(
                format!("{system}batches"),
                s.map_or(Json::Null, |s| json!(s.count)),
            );
        }
        for (key, st) in [
            ("ratio", Stat::P50),
            ("p99_ratio", Stat::P99),
            ("p999_ratio", Stat::P999),
        ] {
            let r = found.map_or(Json::Null, |(_, e, b)| num(ratio(st.1(e), st.1(b))));
            fields.insert(format!("{prefix}{key}"), r);
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_microseconds() {
        let mut l = Latency::new().unwrap();
        for i in 1..=1000u64 {
            l.record(Duration::from_micros(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        l.record(Duration::from_secs(3600));
        assert!(l.summary().max_us <= MAX_NANOS as f64 / 1000.0 * 1.001);
    }

    #[test]
    fn latencies_add_up() {
        let (mut a, mut b) = (Latency::new().unwrap(), Latency::new().unwrap());
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(30));
        b.record(Duration::from_micros(20));
        a.add(&b).unwrap();
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert!((s.p50_us - 20.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(["keys", "p50 us"]);
        t.row(["uniform", "12.5"]);
        t.row(["zipf", "7.25"]);
        assert_eq!(
            t.render(),
            "keys     p50 us\n---------------\nuniform    12.5\nzipf       7.25"
        );
    }
}
