//! What `quiver-bench offline` prints: the table, then one JSON line.

use serde_json::{json, Value as Json};

use super::data::Generated;
use super::worker::Measured;
use super::{OfflineArgs, Sizes, TARGET_RATIO};
use crate::harness::report::{median, median_of, num, ratio, verdict, Fields, Table};

/// Everything the report prints.
pub(super) struct Report<'a> {
    pub(super) args: &'a OfflineArgs,
    pub(super) sizes: Sizes,
    pub(super) gen: Generated,
    pub(super) gen_s: f64,
    pub(super) filesystem: String,
    pub(super) load_start: String,
    pub(super) load_end: String,
    pub(super) duckdb_status: std::result::Result<String, String>,
    pub(super) quiver: Vec<Measured>,
    pub(super) duck: Vec<Measured>,
    pub(super) comparison: Option<Json>,
    pub(super) mat: Measured,
}

fn max_of(xs: impl Iterator<Item = Option<f64>>) -> f64 {
    xs.flatten().fold(f64::NAN, f64::max)
}

impl Report<'_> {
    fn quiver_s(&self) -> f64 {
        median_of(&self.quiver, |m| m.wall_s)
    }

    fn duckdb_s(&self) -> f64 {
        median(
            &self
                .duck
                .iter()
                .filter_map(|m| m.figure("seconds"))
                .collect::<Vec<_>>(),
        )
    }

    fn quiver_rss(&self) -> f64 {
        max_of(self.quiver.iter().map(|m| m.peak_rss_mb))
    }

    fn duckdb_rss(&self) -> f64 {
        max_of(self.duck.iter().map(|m| m.peak_rss_mb))
    }

    /// Whether both training sets were the same, row by row (`None`: not compared).
    pub(super) fn identical(&self) -> Option<bool> {
        self.comparison
            .as_ref()
            .and_then(|c| c.get("identical"))
            .and_then(Json::as_bool)
    }

    fn compared(&self, field: &str) -> Json {
        self.comparison
            .as_ref()
            .and_then(|c| c.get(field))
            .cloned()
            .unwrap_or(Json::Null)
    }

    /// The table.
    pub(super) fn table(&self) -> String {
        let a = self.args;
        let s = &self.sizes;
        let mut t = Table::new(["system", "wall (s)", "peak RSS (MB)", "runs (s)"]);
        let runs = |xs: Vec<f64>| {
            xs.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        t.row([
            "quiver historical".to_owned(),
            format!("{:.2}", self.quiver_s()),
            format!("{:.0}", self.quiver_rss()),
            runs(self.quiver.iter().map(|m| m.wall_s).collect()),
        ]);
        let duck_line = match &self.duckdb_status {
            Ok(v) => {
                t.row([
                    format!("DuckDB {v} ASOF LEFT JOIN"),
                    format!("{:.2}", self.duckdb_s()),
                    format!("{:.0}", self.duckdb_rss()),
                    runs(
                        self.duck
                            .iter()
                            .filter_map(|m| m.figure("seconds"))
                            .collect(),
                    ),
                ]);
                let r = ratio(self.quiver_s(), self.duckdb_s());
                let rss = ratio(self.quiver_rss(), self.duckdb_rss());
                let identical = match self.identical() {
                    Some(true) => "identical, row by row".to_owned(),
                    _ => format!(
                        "DIFFERENT: {} mismatched rows, by column {}, first {}",
                        self.compared("mismatched_rows"),
                        self.compared("mismatches_by_column"),
                        self.compared("first_mismatches")
                    ),
                };
                format!(
                    "quiver / duckdb: time {r:.2} (target at most {TARGET_RATIO}: {}), peak RSS \
                     {rss:.2} (target at most 1: {})\noutputs: {identical}; null feature values \
                     {} (all features null in {} of rows)",
                    verdict(r <= TARGET_RATIO),
                    verdict(rss <= 1.0),
                    self.compared("null_fraction"),
                    self.compared("all_null_fraction"),
                )
            }
            Err(why) => format!("DuckDB: not run: {why}"),
        };
        t.row([
            "quiver materialize --out".to_owned(),
            format!("{:.2}", self.mat.wall_s),
            format!("{:.0}", self.mat.peak_rss_mb.unwrap_or(f64::NAN)),
            format!("{} entities", self.gen.distinct_keys),
        ]);
        format!(
            "Quiver offline benchmark (W8): {} history rows × {} features ({} bytes, {}), {} \
             users, {} entity rows; seed {}; threads {}; on {}; load average {} → {}\n\n{}\n\n\
             {duck_line}\ndata generated in {:.1} s",
            s.history_rows,
            a.features,
            self.gen.history_bytes,
            if a.created {
                "with a created column"
            } else {
                "no created column"
            },
            s.entities,
            s.entity_rows,
            a.seed,
            if a.threads == 0 {
                "one per core".to_owned()
            } else {
                a.threads.to_string()
            },
            self.filesystem,
            self.load_start,
            self.load_end,
            t.render(),
            self.gen_s,
        )
    }

    /// The JSON line.
    pub(super) fn json(&self) -> String {
        let a = self.args;
        let s = &self.sizes;
        let duck_ok = self.duckdb_status.is_ok();
        let opt = |x: f64| if duck_ok { num(x) } else { Json::Null };
        let r = ratio(self.quiver_s(), self.duckdb_s());
        let rss_r = ratio(self.quiver_rss(), self.duckdb_rss());
        Fields::new(json!({
            "workload": "offline",
            "history_rows": s.history_rows,
            "entity_rows": s.entity_rows,
            "entities": s.entities,
            "features": a.features,
            "created_column": a.created,
            "seed": a.seed,
            "threads": a.threads,
            "repeats": a.repeats,
            "history_bytes": self.gen.history_bytes,
            "entities_bytes": self.gen.entities_bytes,
            "gen_s": num(self.gen_s),
            "quiver_s": num(self.quiver_s()),
            "quiver_all_s": self.quiver.iter().map(|m| num(m.wall_s)).collect::<Vec<_>>(),
            "quiver_join_s": num(median(&self.quiver.iter()
                .filter_map(|m| m.figure("seconds")).collect::<Vec<_>>())),
            "quiver_peak_rss_mb": num(self.quiver_rss()),
            "duckdb_s": opt(self.duckdb_s()),
            "duckdb_all_s": self.duck.iter().map(|m| num(m.figure("seconds")
                .unwrap_or(f64::NAN))).collect::<Vec<_>>(),
            "duckdb_process_s": opt(median(&self.duck.iter().map(|m| m.wall_s)
                .collect::<Vec<_>>())),
            "duckdb_peak_rss_mb": opt(self.duckdb_rss()),
            "duckdb_baseline_rss_mb": opt(max_of(self.duck.iter()
                .map(|m| m.figure("baseline_rss_mb")))),
            "duckdb_threads": self.duck.first().and_then(|m| m.figures.get("threads")).cloned(),
            "duckdb_version": self.duckdb_status.as_ref().ok(),
            "duckdb_missing": self.duckdb_status.as_ref().err(),
            "ratio": opt(r),
            "rss_ratio": opt(rss_r),
            "rows": s.entity_rows,
            "identical": self.identical(),
            "mismatched_rows": self.compared("mismatched_rows"),
            "column_types_match": self.compared("column_types_match"),
        }))
        .extend(json!({
            "materialize_s": num(self.mat.wall_s),
            "materialize_peak_rss_mb": num(self.mat.peak_rss_mb.unwrap_or(f64::NAN)),
            "materialize_entities": self.mat.count("entities"),
            "snapshot_bytes": self.mat.count("bytes"),
            "quiver_output_bytes": self.quiver.first().and_then(|m| m.count("bytes")),
            "null_fraction": self.compared("null_fraction"),
            "all_null_fraction": self.compared("all_null_fraction"),
            "target_ratio": TARGET_RATIO,
            "ratio_met": duck_ok.then_some(r <= TARGET_RATIO),
            "rss_met": duck_ok.then_some(rss_r <= 1.0),
            "filesystem": self.filesystem,
            "loadavg_start": self.load_start,
            "loadavg_end": self.load_end,
        }))
        .to_string()
    }
}
