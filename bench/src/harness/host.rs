//! What the host says: wall-clock time, the load average other work puts on it, and the
//! filesystem scratch files go to.

use std::path::Path;

use quiver_engine::MICROS_PER_SEC;

use crate::scratch::filesystem_of;
use crate::scratch::scratch_dir;
use crate::Result;
use quiver_testkit::TempDir;

/// Wall-clock time, microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Wall-clock time, whole seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    now_micros() / MICROS_PER_SEC
}

/// `/proc/loadavg`'s 1, 5 and 15-minute load averages; `unknown` if it cannot be read.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A scratch directory under `parent` and the filesystem it is on (the figures depend on it),
/// reported on stderr.
pub(crate) fn scratch_on(parent: Option<&Path>, label: &str) -> Result<(TempDir, String)> {
    let scratch = scratch_dir(parent, label)?;
    let filesystem = filesystem_of(scratch.path());
    eprintln!(
        "scratch directory {} ({filesystem})",
        scratch.path().display()
    );
    Ok((scratch, filesystem))
}
