//! What a comparison reports: the stdout table, `report.md`, `report.json`, SVG charts (drawn
//! with plotters) and the JSON line. Every Quiver figure sits next to the Redis figures of the
//! same run, and the headline figures are ratios.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde_json::{json, Map, Value as Json};

use crate::clients::runner::{Contender, Outcome};
use crate::compare::bulk::LoadTime;
use crate::compare::{Settings, WorkloadId};
use crate::error::io;
use crate::harness::host::loadavg;
use crate::harness::placement::Placement;
use crate::harness::report::{num, ratio, Fields, Stat, Table};
use crate::keys::Dist;
use crate::{BenchError, Result};

/// The machine a run happened on.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) memory_bytes: u64,
    pub(crate) kernel: String,
    pub(crate) redis: String,
    /// `/proc/loadavg` at the start and at the end: other work on the machine skews figures.
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    /// Where the servers and the harness ran (see `harness::placement`).
    pub(crate) placement: Placement,
}

impl Machine {
    /// Reads `/proc`.
    pub(crate) fn read(redis: String, placement: Placement) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            redis,
            load_before: loadavg(),
            load_after: String::new(),
            placement,
        }
    }
}

/// One closed-loop measurement.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) workload: WorkloadId,
    pub(crate) system: Contender,
    pub(crate) dist: Dist,
    pub(crate) concurrency: usize,
    pub(crate) outcome: Outcome,
}

/// W5.
#[derive(Debug, Clone)]
pub(crate) struct LoadFigures {
    /// LoadSnapshot of both views until they answer, seconds.
    pub(crate) quiver_seconds: f64,
    /// Building the snapshot files (the materializer's work, not part of the load).
    pub(crate) quiver_prep_seconds: f64,
    /// Bytes of the snapshot files.
    pub(crate) quiver_bytes: u64,
    pub(crate) feast: LoadTime,
    pub(crate) blob: LoadTime,
}

/// W6: process RSS (VmRSS) before loading and after loading and reading everything, for
/// quiver, redis-feast, redis-blob; Redis `used_memory` for feast, blob.
#[derive(Debug, Clone)]
pub(crate) struct MemFigures {
    pub(crate) entities: u64,
    pub(crate) rss_before: [u64; 3],
    pub(crate) rss_after: [u64; 3],
    pub(crate) used_before: [u64; 2],
    pub(crate) used_after: [u64; 2],
    pub(crate) quiver_snapshot_bytes: u64,
}

impl MemFigures {
    fn per_entity(&self, before: u64, after: u64) -> f64 {
        (after as f64 - before as f64) / self.entities.max(1) as f64
    }
    /// RSS delta per entity of system `i` (0 quiver, 1 redis-feast, 2 redis-blob).
    fn rss_per_entity(&self, i: usize) -> f64 {
        self.per_entity(self.rss_before[i], self.rss_after[i])
    }
    /// `used_memory` delta per entity of Redis instance `i` (0 feast, 1 blob).
    fn used_per_entity(&self, i: usize) -> f64 {
        self.per_entity(self.used_before[i], self.used_after[i])
    }
}

/// W7.
#[derive(Debug, Clone)]
pub(crate) struct RestartFigures {
    /// Spawn to gRPC health SERVING (snapshots opened, WAL tail replayed).
    pub(crate) quiver_seconds: f64,
    pub(crate) quiver_checkpoint_seconds: f64,
    pub(crate) quiver_data_bytes: u64,
    /// Spawn to PONG (RDB loaded).
    pub(crate) redis_seconds: f64,
    /// SAVE, stop, spawn, load.
    pub(crate) redis_save_and_restart_seconds: f64,
    pub(crate) redis_rdb_bytes: u64,
    /// Rows written after Quiver's checkpoint (its WAL tail), and to Redis before SAVE.
    pub(crate) tail_rows: u64,
}

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) settings: Settings,
    pub(crate) machine: Machine,
    pub(crate) command: String,
    pub(crate) started_unix: u64,
    pub(crate) runs: Vec<Measured>,
    pub(crate) load: Option<LoadFigures>,
    pub(crate) memory: Option<MemFigures>,
    pub(crate) restart: Option<RestartFigures>,
    pub(crate) duration_s: f64,
    pub(crate) dir: Option<PathBuf>,
}

/// A headline ratio, its goal, and whether it was met.
struct Headline {
    key: &'static str,
    value: Option<f64>,
    goal: String,
    met: Option<bool>,
    what: String,
}

/// What a headline ratio should be.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Reported, no goal.
    Unset,
}

impl Goal {
    fn text(self) -> String {
        match self {
            Self::AtLeast(g) => format!(">= {g}"),
            Self::AtMost(g) => format!("<= {g}"),
            Self::Unset => String::new(),
        }
    }

    fn met(self, v: Option<f64>) -> Option<bool> {
        match self {
            Self::AtLeast(g) => v.map(|v| v >= g),
            Self::AtMost(g) => v.map(|v| v <= g),
            Self::Unset => None,
        }
    }
}

impl Report {
    pub(crate) fn new(settings: &Settings, machine: Machine) -> Self {
        Self {
            settings: settings.clone(),
            machine,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            runs: Vec::new(),
            load: None,
            memory: None,
            restart: None,
            duration_s: 0.0,
            dir: None,
        }
    }

    /// The measurement of `system` closest to (`w`, uniform keys if measured, `concurrency`):
    /// the largest measured concurrency not above it, else the smallest.
    fn pick(&self, w: WorkloadId, system: Contender, concurrency: usize) -> Option<&Measured> {
        let dist = if self.settings.dists.contains(&Dist::Uniform) {
            Dist::Uniform
        } else {
            *self.settings.dists.first()?
        };
        let of: Vec<&Measured> = self
            .runs
            .iter()
            .filter(|m| m.workload == w && m.system == system && m.dist == dist)
            .collect();
        of.iter()
            .filter(|m| m.concurrency <= concurrency)
            .max_by_key(|m| m.concurrency)
            .or_else(|| of.iter().min_by_key(|m| m.concurrency))
            .copied()
    }

    fn ratio_of(
        &self,
        w: WorkloadId,
        c: usize,
        a: Contender,
        b: Contender,
        f: impl Fn(&Outcome) -> f64,
    ) -> Option<f64> {
        let (x, y) = (self.pick(w, a, c)?, self.pick(w, b, c)?);
        Some(ratio(f(&x.outcome), f(&y.outcome)))
    }

    fn headlines(&self) -> Vec<Headline> {
        use Contender::{Quiver as Q, RedisBlob as B, RedisFeast as F};
        use Goal::{AtLeast, AtMost, Unset};
        use WorkloadId::{Write, W1, W2, W3, W4};
        let vps = |o: &Outcome| o.values_per_sec();
        let p99 = |o: &Outcome| o.latency.summary().p99_us;
        let rows = |o: &Outcome| o.rows_per_sec();
        let rps = |o: &Outcome| o.rps();
        // Each server's own CPU (pinned placement: one core each); NaN when not measured.
        let per_cpu = |o: &Outcome| o.values_per_server_cpu_sec().unwrap_or(f64::NAN);
        let values_cpu = "feature values per server CPU second, Quiver /";
        let w5 = self
            .load
            .as_ref()
            .map(|l| ratio(l.feast.load_seconds, l.quiver_seconds));
        let w6 = (self.memory.as_ref()).map(|m| ratio(m.rss_per_entity(0), m.rss_per_entity(1)));
        let w7 = (self.restart.as_ref()).map(|r| ratio(r.redis_seconds, r.quiver_seconds));
        let values = "feature values/s, Quiver /";
        [
            (
                "w1_p99_ratio",
                self.ratio_of(W1, 8, Q, F, p99),
                AtMost(1.1),
                "W1 p99, Quiver / Redis-Feast, concurrency 8".to_owned(),
            ),
            (
                "w1_rps_ratio_feast",
                self.ratio_of(W1, 8, Q, F, rps),
                AtLeast(1.0),
                "W1 requests/s, Quiver / Redis-Feast, concurrency 8".to_owned(),
            ),
            (
                "w1_cpu_ratio_feast",
                self.ratio_of(W1, 8, Q, F, per_cpu),
                Unset,
                format!("W1 {values_cpu} Redis-Feast, concurrency 8"),
            ),
            (
                "w2_ratio_feast",
                self.ratio_of(W2, 64, Q, F, vps),
                AtLeast(3.0),
                format!("W2 {values} Redis-Feast, concurrency 64"),
            ),
            (
                "w2_ratio_blob",
                self.ratio_of(W2, 64, Q, B, vps),
                AtLeast(2.0),
                format!("W2 {values} Redis-blob, concurrency 64"),
            ),
            (
                "w2_cpu_ratio_blob",
                self.ratio_of(W2, 64, Q, B, per_cpu),
                Unset,
                format!("W2 {values_cpu} Redis-blob, concurrency 64"),
            ),
            (
                "w3_ratio_feast",
                self.ratio_of(W3, 64, Q, F, vps),
                Unset,
                format!("W3 {values} Redis-Feast, concurrency 64"),
            ),
            (
                "w3_ratio_blob",
                self.ratio_of(W3, 64, Q, B, vps),
                Unset,
                format!("W3 {values} Redis-blob, concurrency 64"),
            ),
            (
                "w4_ratio_feast",
                self.ratio_of(W4, 64, Q, F, vps),
                Unset,
                "W4 feature values/s (reads and writes), Quiver / Redis-Feast, concurrency 64"
                    .into(),
            ),
            (
                "w4_ratio_blob",
                self.ratio_of(W4, 64, Q, B, vps),
                AtLeast(1.5),
                "W4 feature values/s (reads and writes), Quiver / Redis-blob, concurrency 64"
                    .into(),
            ),
            (
                "w4_cpu_ratio_blob",
                self.ratio_of(W4, 64, Q, B, per_cpu),
                Unset,
                format!("W4 {values_cpu} Redis-blob, concurrency 64"),
            ),
            (
                "w5_load_ratio",
                w5,
                AtLeast(20.0),
                "W5 bulk load seconds, Redis-Feast mass insertion / Quiver LoadSnapshot".into(),
            ),
            (
                "w6_memory_ratio",
                w6,
                AtMost(0.4),
                "W6 RSS bytes per entity, Quiver / Redis-Feast".into(),
            ),
            (
                "w7_restart_ratio",
                w7,
                AtLeast(5.0),
                "W7 restart-to-serving seconds, Redis-Feast (RDB) / Quiver (snapshots + WAL)"
                    .into(),
            ),
            (
                "write_ratio_fsync_always",
                self.ratio_of(Write, 64, Q, F, rows),
                Unset,
                "rows/s with fsync per ack, Quiver fsync=always / Redis-Feast appendfsync always, \
              64 writers"
                    .into(),
            ),
            (
                "write_ratio_blob",
                self.ratio_of(Write, 64, Q, B, rows),
                AtLeast(1.0),
                "rows/s with fsync per ack, Quiver fsync=always / Redis-blob appendfsync always, \
              64 writers"
                    .into(),
            ),
        ]
        .into_iter()
        .map(|(key, value, goal, what)| Headline {
            key,
            value,
            goal: goal.text(),
            met: goal.met(value),
            what,
        })
        .collect()
    }

    /// The last stdout line.
    pub(crate) fn json_line(&self) -> String {
        let mut m = Map::new();
        m.insert("bench".into(), json!("compare"));
        for h in self.headlines() {
            m.insert(h.key.into(), h.value.map_or(Json::Null, num));
        }
        m.insert("entities".into(), json!(self.settings.entities));
        m.insert("duration_s".into(), num(self.duration_s));
        m.insert("smoke".into(), json!(self.settings.smoke));
        m.insert(
            "report".into(),
            json!(self.dir.as_ref().map(|d| d.display().to_string())),
        );
        Json::Object(m).to_string()
    }

    /// The stdout table.
    pub(crate) fn table(&self) -> String {
        let mut t = Table::new([
            "workload", "system", "keys", "conc", "req/s", "rows/s", "values/s", "p50 us",
            "p99 us", "p999 us", "max us", "checked",
        ]);
        for m in &self.runs {
            let o = &m.outcome;
            let s = o.latency.summary();
            t.row([
                m.workload.name().to_owned(),
                m.system.name().to_owned(),
                m.dist.name().to_owned(),
                m.concurrency.to_string(),
                format!("{:.0}", o.rps()),
                format!("{:.0}", o.rows_per_sec()),
                format!("{:.0}", o.values_per_sec()),
                format!("{:.0}", s.p50_us),
                format!("{:.0}", s.p99_us),
                format!("{:.0}", s.p999_us),
                format!("{:.0}", s.max_us),
                o.checked.to_string(),
            ]);
        }
        let mut out = t.render();
        let mut s = Table::new(["figure", "quiver", "redis-feast", "redis-blob"]);
        if let Some(l) = &self.load {
            s.row([
                "W5 load s".to_owned(),
                format!("{:.3}", l.quiver_seconds),
                format!("{:.3}", l.feast.load_seconds),
                format!("{:.3}", l.blob.load_seconds),
            ]);
            s.row([
                "W5 prep s (not timed)".to_owned(),
                format!("{:.3}", l.quiver_prep_seconds),
                format!("{:.3}", l.feast.prep_seconds),
                format!("{:.3}", l.blob.prep_seconds),
            ]);
        }
        if let Some(m) = &self.memory {
            s.row([
                "W6 RSS B/entity".to_owned(),
                format!("{:.0}", m.rss_per_entity(0)),
                format!("{:.0}", m.rss_per_entity(1)),
                format!("{:.0}", m.rss_per_entity(2)),
            ]);
            s.row([
                "W6 used_memory B/entity".to_owned(),
                "-".into(),
                format!("{:.0}", m.used_per_entity(0)),
                format!("{:.0}", m.used_per_entity(1)),
            ]);
        }
        if let Some(r) = &self.restart {
            s.row([
                "W7 restart to serving s".to_owned(),
                format!("{:.3}", r.quiver_seconds),
                format!("{:.3}", r.redis_seconds),
                "-".into(),
            ]);
        }
        out.push_str("\n\n");
        out.push_str(&s.render());
        let mut h = Table::new(["ratio", "value", "goal", "met"]);
        for x in self.headlines() {
            h.row([
                x.key.to_owned(),
                x.value.map_or("-".into(), |v| format!("{v:.3}")),
                x.goal.clone(),
                x.met
                    .map_or("-".into(), |m| if m { "yes" } else { "no" }.into()),
            ]);
        }
        out.push_str("\n\n");
        out.push_str(&h.render());
        out
    }

    fn json(&self) -> Json {
        let s = &self.settings;
        let runs: Vec<Json> = self
            .runs
            .iter()
            .map(|m| {
                let o = &m.outcome;
                Fields::new(json!({
                    "workload": m.workload.name(),
                    "system": m.system.name(),
                    "dist": m.dist.name(),
                    "concurrency": m.concurrency,
                    "requests": o.requests,
                    "seconds": num(o.seconds),
                    "rps": num(o.rps()),
                    "rows_per_s": num(o.rows_per_sec()),
                    "values_per_s": num(o.values_per_sec()),
                    "server_cpu_s": o.server_cpu_seconds.map_or(Json::Null, num),
                    "values_per_server_cpu_s": o.values_per_server_cpu_sec().map_or(Json::Null, num),
                    "checked_responses": o.checked,
                }))
                .latency("", Some(&o.latency.summary()), &Stat::ALL)
                .json()
            })
            .collect();
        let headlines: Map<String, Json> = self
            .headlines()
            .into_iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    json!({"value": h.value.map_or(Json::Null, num), "goal": h.goal,
                           "met": h.met, "what": h.what}),
                )
            })
            .collect();
        let m = &self.machine;
        json!({
            "command": self.command,
            "started_unix": self.started_unix,
            "duration_s": num(self.duration_s),
            "machine": {
                "cpu": m.cpu, "cores": m.cores, "memory_bytes": m.memory_bytes,
                "kernel": m.kernel, "redis": m.redis,
                "loadavg_before": m.load_before, "loadavg_after": m.load_after,
                "placement": m.placement.name(), "server_cpus": m.placement.server_cpus(),
                "client_cpus": m.placement.client_cpus(),
            },
            "settings": {
                "entities": s.entities, "duration_s": s.duration, "warmup_s": s.warmup,
                "concurrency": s.concurrency,
                "dists": s.dists.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "workloads": s.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
                "smoke": s.smoke, "server_threads": s.server_threads,
                "redis_io_threads": s.redis_io_threads,
                "client_threads": s.client_threads, "write_batch": s.write_batch,
                "seed": s.seed, "quiver_connections": s.quiver_connections,
            },
            "ratios": headlines,
            "runs": runs,
            "w5": self.load.as_ref().map(|l| json!({
                "quiver_load_s": num(l.quiver_seconds),
                "quiver_snapshot_build_s": num(l.quiver_prep_seconds),
                "quiver_snapshot_bytes": l.quiver_bytes,
                "redis_feast_load_s": num(l.feast.load_seconds),
                "redis_feast_protocol_build_s": num(l.feast.prep_seconds),
                "redis_feast_protocol_bytes": l.feast.bytes,
                "redis_blob_load_s": num(l.blob.load_seconds),
                "redis_blob_protocol_build_s": num(l.blob.prep_seconds),
                "redis_blob_protocol_bytes": l.blob.bytes,
            })),
            "w6": self.memory.as_ref().map(|x| json!({
                "entities": x.entities,
                "quiver_rss_bytes_per_entity": num(x.rss_per_entity(0)),
                "redis_feast_rss_bytes_per_entity": num(x.rss_per_entity(1)),
                "redis_blob_rss_bytes_per_entity": num(x.rss_per_entity(2)),
                "redis_feast_used_memory_bytes_per_entity": num(x.used_per_entity(0)),
                "redis_blob_used_memory_bytes_per_entity": num(x.used_per_entity(1)),
                "rss_before": x.rss_before, "rss_after": x.rss_after,
                "used_memory_before": x.used_before, "used_memory_after": x.used_after,
                "quiver_snapshot_bytes": x.quiver_snapshot_bytes,
            })),
            "w7": self.restart.as_ref().map(|r| json!({
                "quiver_restart_s": num(r.quiver_seconds),
                "quiver_checkpoint_s": num(r.quiver_checkpoint_seconds),
                "quiver_data_dir_bytes": r.quiver_data_bytes,
                "redis_feast_restart_s": num(r.redis_seconds),
                "redis_feast_save_and_restart_s": num(r.redis_save_and_restart_seconds),
                "redis_feast_rdb_bytes": r.redis_rdb_bytes,
                "wal_tail_rows": r.tail_rows,
            })),
        })
    }

    fn markdown(&self, charts: &[String]) -> String {
        let s = &self.settings;
        let m = &self.machine;
        let mut md = String::new();
        md.push_str("# Quiver vs Redis\n\n");
        md.push_str(&format!("Command: `{}`\n\n", self.command));
        md.push_str(&format!(
            "Machine: {} ({} cores), {:.1} GiB RAM, Linux {}, {}; load average {} at the \
             start, {} at the end.\n\n",
            m.cpu,
            m.cores,
            m.memory_bytes as f64 / f64::from(1u32 << 30),
            m.kernel,
            m.redis,
            m.load_before,
            m.load_after
        ));
        md.push_str(&format!(
            "Dataset: {} users; `user_stats` (20 features) and `user_embedding` (64 × f32), \
             seed {}. {} s per measurement after {} s of warm-up; concurrency {:?}; keys {}; \
             Quiver server threads {}, client threads {}; run took {:.0} s{}.\n\n",
            s.entities,
            s.seed,
            s.duration,
            s.warmup,
            s.concurrency,
            s.dists
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(" and "),
            s.server_threads,
            s.client_threads,
            self.duration_s,
            if s.smoke {
                " (**smoke run: a harness check, not a measurement**)"
            } else {
                ""
            }
        ));
        md.push_str("## Headline ratios\n\n| ratio | value | goal | met | definition |\n|---|---:|---|---|---|\n");
        for h in self.headlines() {
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                h.key,
                h.value.map_or("-".into(), |v| format!("{v:.3}")),
                h.goal,
                h.met.map_or("-", |m| if m { "yes" } else { "no" }),
                h.what
            ));
        }
        md.push_str("\n## Closed-loop workloads\n\n```text\n");
        md.push_str(&self.table());
        md.push_str("\n```\n\n");
        if !charts.is_empty() {
            md.push_str("## Charts\n\n");
            for c in charts {
                md.push_str(&format!("![{c}]({c})\n\n"));
            }
        }
        md.push_str(
            "Fairness choices (pipelining, connections, layouts, what is timed) are listed in \
             docs/benchmarks.md, section \"Quiver vs Redis\".\n",
        );
        md
    }

    /// Writes `<root>/<UTC timestamp>/report.{md,json}` and the charts; returns the directory.
    pub(crate) fn write(&mut self, root: &Path) -> Result<PathBuf> {
        let dir = root.join(utc_stamp(self.started_unix));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        self.dir = Some(dir.clone());
        let charts = self.charts(&dir)?;
        let json = serde_json::to_string_pretty(&self.json())
            .map_err(|e| BenchError::InvalidArgument(e.to_string()))?;
        std::fs::write(dir.join("report.json"), json).map_err(io("writing report.json"))?;
        std::fs::write(dir.join("report.md"), self.markdown(&charts))
            .map_err(io("writing report.md"))?;
        Ok(dir)
    }

    /// One SVG per closed-loop workload and key distribution (throughput and p99 against
    /// concurrency, a line per system), and one of W5-W7.
    fn charts(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut workloads: Vec<WorkloadId> = self.runs.iter().map(|m| m.workload).collect();
        workloads.dedup();
        for w in workloads {
            for &dist in &self.settings.dists {
                let name = format!("{}_{}.svg", w.name().to_lowercase(), dist.name());
                let runs: Vec<&Measured> = self
                    .runs
                    .iter()
                    .filter(|m| m.workload == w && m.dist == dist)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                line_chart(&dir.join(&name), w, dist, &self.settings.concurrency, &runs)
                    .map_err(chart_err)?;
                names.push(name);
            }
        }
        if self.load.is_some() || self.memory.is_some() || self.restart.is_some() {
            let name = "w5_w6_w7.svg".to_owned();
            self.bar_chart(&dir.join(&name)).map_err(chart_err)?;
            names.push(name);
        }
        Ok(names)
    }

    fn bar_chart(&self, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (1200, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        let mut groups: Vec<(&str, Vec<(Contender, f64)>)> = Vec::new();
        if let Some(l) = &self.load {
            groups.push((
                "W5 bulk load, seconds",
                vec![
                    (Contender::Quiver, l.quiver_seconds),
                    (Contender::RedisFeast, l.feast.load_seconds),
                    (Contender::RedisBlob, l.blob.load_seconds),
                ],
            ));
        }
        if let Some(m) = &self.memory {
            groups.push((
                "W6 RSS bytes per entity",
                vec![
                    (Contender::Quiver, m.rss_per_entity(0)),
                    (Contender::RedisFeast, m.rss_per_entity(1)),
                    (Contender::RedisBlob, m.rss_per_entity(2)),
                ],
            ));
        }
        if let Some(r) = &self.restart {
            groups.push((
                "W7 restart to serving, seconds",
                vec![
                    (Contender::Quiver, r.quiver_seconds),
                    (Contender::RedisFeast, r.redis_seconds),
                ],
            ));
        }
        for (panel, (title, bars)) in panels.iter().zip(&groups) {
            let top = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9) * 1.15;
            let n = bars.len();
            let mut chart = ChartBuilder::on(panel)
                .caption(*title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 {
                        bars.get(i as usize)
                            .map_or(String::new(), |b| b.0.name().to_owned())
                    } else {
                        String::new()
                    }
                })
                .draw()?;
            chart.draw_series(bars.iter().enumerate().map(|(i, (sys, v))| {
                let x = i as f64;
                Rectangle::new([(x - 0.3, 0.0), (x + 0.3, *v)], color(*sys).filled())
            }))?;
        }
        root.present()?;
        Ok(())
    }
}

fn chart_err(e: Box<dyn std::error::Error>) -> BenchError {
    BenchError::other("drawing a chart", e.to_string())
}

fn color(s: Contender) -> RGBColor {
    match s {
        Contender::Quiver => RGBColor(0x1f, 0x77, 0xb4),
        Contender::RedisFeast => RGBColor(0xd6, 0x27, 0x28),
        Contender::RedisBlob => RGBColor(0xff, 0x7f, 0x0e),
        Contender::Echo => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Throughput and p99 against concurrency (categorical axis), one line per system.
fn line_chart(
    path: &Path,
    w: WorkloadId,
    dist: Dist,
    concurrency: &[usize],
    runs: &[&Measured],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let n = concurrency.len();
    let x_of = |c: usize| concurrency.iter().position(|&x| x == c).unwrap_or(0) as f64;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            concurrency
                .get(i as usize)
                .map_or(String::new(), |c| c.to_string())
        } else {
            String::new()
        }
    };
    let mut systems: Vec<Contender> = runs.iter().map(|m| m.system).collect();
    systems.sort();
    systems.dedup();
    let unit = if w == WorkloadId::Write {
        "rows/s"
    } else {
        "feature values/s"
    };
    let metric = |o: &Outcome| {
        if w == WorkloadId::Write {
            o.rows_per_sec()
        } else {
            o.values_per_sec()
        }
    };
    let top = runs
        .iter()
        .map(|m| metric(&m.outcome))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!("{} {}: {unit}", w.name(), dist.name()),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .x_desc("client concurrency")
        .y_label_formatter(&|v| format!("{v:.2e}"))
        .draw()?;
    lines(&mut chart, &systems, runs, &x_of, |m| metric(&m.outcome))?;

    let p99s: Vec<f64> = runs
        .iter()
        .map(|m| m.outcome.latency.summary().p99_us.max(1.0))
        .collect();
    let lo = p99s.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 1.5;
    let hi = p99s.iter().copied().fold(1.0f64, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!("{} {}: p99 latency, us (log)", w.name(), dist.name()),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .x_desc("client concurrency")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    lines(&mut chart, &systems, runs, &x_of, |m| {
        m.outcome.latency.summary().p99_us.max(1.0)
    })?;
    root.present()?;
    Ok(())
}

/// One line per system of `value` against concurrency, points marked, with a legend.
fn lines<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    systems: &[Contender],
    runs: &[&Measured],
    x_of: &dyn Fn(usize) -> f64,
    value: impl Fn(&Measured) -> f64,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    for &sys in systems {
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .filter(|m| m.system == sys)
            .map(|m| (x_of(m.concurrency), value(m)))
            .collect();
        let c = color(sys);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(sys.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `YYYYMMDD-HHMMSS` (UTC) of a Unix time: RFC 3339 without its separators.
pub(crate) fn utc_stamp(unix: u64) -> String {
    let micros = i64::try_from(unix)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    quiver_offline::format_time(micros)
        .chars()
        .filter_map(|c| match c {
            '-' | ':' | 'Z' => None,
            'T' => Some('-'),
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
    }
}
