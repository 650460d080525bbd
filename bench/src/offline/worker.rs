//! The measured steps, each in a child process so that its peak RSS is its own: this binary
//! again with `--worker`, or DuckDB's script.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quiver_engine::Registry;
use quiver_offline::{
    materialize_snapshot, write_training_set, EpochUnit, FeaturePlan, History, JoinOptions,
    MaterializeOptions,
};
use serde_json::{json, Value as Json};

use super::{OfflineArgs, Worker, ENTITIES_FILE, REGISTRY_FILE};
use crate::dataset::VIEW;
use crate::error::io;
use crate::{BenchError, Result};

/// A measured step, in this (child) process: prints one JSON line with its figures and its
/// own peak RSS.
pub(super) fn run_worker(args: &OfflineArgs, worker: Worker) -> Result<()> {
    let missing = |flag: &str| BenchError::InvalidArgument(format!("--worker needs {flag}"));
    let dir = args
        .worker_dir
        .as_deref()
        .ok_or_else(|| missing("--worker-dir"))?;
    let out = args
        .worker_out
        .as_deref()
        .ok_or_else(|| missing("--worker-out"))?;
    let offline = |e: quiver_offline::OfflineError| {
        BenchError::other(format!("quiver offline ({worker:?})"), e.to_string())
    };
    let registry = Registry::load(&dir.join(REGISTRY_FILE))?;
    let history = History::for_view(&registry, VIEW, dir, EpochUnit::Seconds).map_err(offline)?;
    let figures = match worker {
        Worker::Join => {
            let view = registry
                .view(VIEW)
                .ok_or_else(|| BenchError::Schema(format!("no view {VIEW:?}")))?;
            let refs: Vec<String> = view
                .features
                .iter()
                .map(|f| format!("{VIEW}:{}", f.name))
                .collect();
            let plan = FeaturePlan::new(&registry, &refs, false).map_err(offline)?;
            let opts = JoinOptions {
                threads: args.threads,
                ..JoinOptions::default()
            };
            let s = write_training_set(
                &registry,
                &plan,
                std::slice::from_ref(&history),
                &dir.join(ENTITIES_FILE),
                out,
                &opts,
            )
            .map_err(offline)?;
            json!({"seconds": s.seconds, "rows": s.rows, "bytes": s.bytes,
                   "history_rows": s.history_rows})
        }
        Worker::Materialize => {
            let opts = MaterializeOptions {
                threads: args.threads,
                ..MaterializeOptions::default()
            };
            let s = materialize_snapshot(&registry, &history, out, &opts).map_err(offline)?;
            json!({"seconds": s.seconds, "entities": s.entities, "bytes": s.bytes,
                   "rows_read": s.rows_read})
        }
    };
    let mut figures = figures;
    figures["peak_rss_kb"] = json!(status_kb("self", "VmHWM"));
    println!("{figures}");
    Ok(())
}

/// What a measured child process did.
#[derive(Debug, Clone)]
pub(super) struct Measured {
    /// Start to exit, seconds.
    pub(super) wall_s: f64,
    /// Peak RSS in MB: the process's own reading at its end, or else the highest sampled.
    pub(super) peak_rss_mb: Option<f64>,
    /// Its JSON line.
    pub(super) figures: Json,
}

impl Measured {
    /// A number of its JSON line.
    pub(super) fn figure(&self, name: &str) -> Option<f64> {
        self.figures.get(name).and_then(Json::as_f64)
    }

    /// A count of its JSON line.
    pub(super) fn count(&self, name: &str) -> Option<u64> {
        self.figures.get(name).and_then(Json::as_u64)
    }
}

pub(super) fn run_worker_process(
    dir: &Path,
    worker: Worker,
    out: &Path,
    threads: usize,
    timeout: Duration,
) -> Result<Measured> {
    let exe = std::env::current_exe().map_err(io("finding this executable"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("offline")
        .arg("--worker")
        .arg(match worker {
            Worker::Join => "join",
            Worker::Materialize => "materialize",
        })
        .arg("--worker-dir")
        .arg(dir)
        .arg("--worker-out")
        .arg(out)
        .arg("--threads")
        .arg(threads.to_string());
    let m = run_measured(cmd, &format!("quiver {worker:?} worker"), timeout)?;
    let own = m.figure("peak_rss_kb").map(|kb| kb / 1024.0);
    Ok(Measured {
        peak_rss_mb: own.or(m.peak_rss_mb),
        ..m
    })
}

/// Runs `cmd` to completion (killed after `timeout`), timing it and sampling its `VmHWM`;
/// its last stdout line must be a JSON object.
pub(super) fn run_measured(mut cmd: Command, what: &str, timeout: Duration) -> Result<Measured> {
    let io = |source| BenchError::Io {
        what: format!("running {what}"),
        source,
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(io)?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io(std::io::Error::other("no stdout pipe")))?;
    // Read on the side, so a chatty child never blocks on a full pipe while we poll.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let proc_dir = child.id().to_string();
    let mut sampled_kb: Option<u64> = None;
    let mut polls = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io(std::io::Error::other(format!(
                "killed after {} s (--timeout)",
                timeout.as_secs()
            ))));
        }
        if polls.is_multiple_of(20) {
            if let Some(kb) = status_kb(&proc_dir, "VmHWM") {
                sampled_kb = Some(sampled_kb.map_or(kb, |s| s.max(kb)));
            }
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall_s = started.elapsed().as_secs_f64();
    let out = reader
        .join()
        .map_err(|_| io(std::io::Error::other("stdout reader panicked")))?
        .map_err(io)?;
    if !status.success() {
        return Err(io(std::io::Error::other(format!(
            "exited with {status}; output: {}",
            out.trim()
        ))));
    }
    let last = out.lines().last().unwrap_or("");
    let figures: Json = serde_json::from_str(last).map_err(|e| {
        io(std::io::Error::other(format!(
            "its last line is not JSON ({e}): {last:?}"
        )))
    })?;
    Ok(Measured {
        wall_s,
        peak_rss_mb: sampled_kb.map(|kb| kb as f64 / 1024.0),
        figures,
    })
}

/// A `Vm*` field of `/proc/<pid>/status` in KiB (`pid` may be `self`).
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
