//! What the host says: wall-clock time, and the load average other work puts on it.

use quiver_engine::MICROS_PER_SEC;

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
