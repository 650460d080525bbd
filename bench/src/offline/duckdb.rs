//! DuckDB's side of the offline benchmark: its `ASOF LEFT JOIN` and the row-by-row comparison
//! of both outputs, run by `bench/scripts/duckdb_asof.py`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use quiver_engine::{Registry, MICROS_PER_SEC};
use serde_json::{json, Value as Json};

use super::worker::{run_measured, Measured};
use super::{OfflineArgs, ENTITIES_FILE, HISTORY_FILE, KEY, TS};
use crate::dataset::VIEW;
use crate::{BenchError, Result};
use quiver_testkit::TempDir;

/// DuckDB's version if `python` can import it, else why not (with the install command).
pub(super) fn probe_duckdb(python: &str) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => Err(format!(
            "{python} could not be started ({e}); install Python 3, then `pip install duckdb`"
        )),
        Ok(o) if !o.status.success() => Err(format!(
            "the Python module duckdb is missing for {python}; install it with `pip install \
             duckdb`"
        )),
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
    }
}

/// The script's description of the join: columns, and each feature's TTL from the registry.
/// No created column: `ASOF` cannot order by (event, created), and without equal event times
/// per user (see the module documentation) it never decides.
pub(super) fn duckdb_spec(registry: &Registry) -> Result<Json> {
    let view = registry
        .view(VIEW)
        .ok_or_else(|| BenchError::Schema(format!("no view {VIEW:?}")))?;
    let features: Vec<Json> = view
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "name": f.name,
                "column": f.column.clone().unwrap_or_else(|| f.name.clone()),
                "ttl_us": view.feature_ttl_secs(i).saturating_mul(MICROS_PER_SEC as u64),
            })
        })
        .collect();
    Ok(json!({"key": KEY, "entity_ts": TS, "history_ts": TS, "features": features}))
}

fn script_command(args: &OfflineArgs, scratch: &TempDir, script: &Path, cmd: &str) -> Command {
    let mut c = Command::new(&args.python);
    c.arg(script)
        .arg(cmd)
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--temp-dir")
        .arg(scratch.join("duckdb-tmp"))
        .current_dir(scratch.path());
    c
}

pub(super) fn run_duckdb_join(
    args: &OfflineArgs,
    scratch: &TempDir,
    script: &Path,
    spec: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<Measured> {
    let mut cmd = script_command(args, scratch, script, "join");
    cmd.arg("--spec")
        .arg(spec)
        .arg("--entities")
        .arg(scratch.join(ENTITIES_FILE))
        .arg("--history")
        .arg(scratch.join(HISTORY_FILE))
        .arg("--out")
        .arg(out);
    let m = run_measured(
        cmd,
        "the DuckDB join (bench/scripts/duckdb_asof.py)",
        timeout,
    )?;
    Ok(Measured {
        peak_rss_mb: m.figure("peak_rss_mb").or(m.peak_rss_mb),
        ..m
    })
}

pub(super) fn compare_outputs(
    args: &OfflineArgs,
    scratch: &TempDir,
    script: &Path,
    registry: &Registry,
    quiver: &Path,
    duck: &Path,
    timeout: Duration,
) -> Result<Json> {
    let features: Vec<&str> = registry
        .view(VIEW)
        .map(|v| v.features.iter().map(|f| f.name.as_str()).collect())
        .unwrap_or_default();
    let mut cmd = script_command(args, scratch, script, "compare");
    cmd.arg("--quiver")
        .arg(quiver)
        .arg("--duckdb")
        .arg(duck)
        .arg("--features")
        .arg(features.join(","));
    let m = run_measured(
        cmd,
        "the comparison (bench/scripts/duckdb_asof.py)",
        timeout,
    )?;
    Ok(m.figures)
}
