//! Where each view was last materialized to, and up to which event time, so that
//! `materialize --incremental` can continue from there.
//!
//! A small text file, one line per (view, target): `<end micros>\t<view>\t<target>`.
//! Replaced atomically (temporary file, rename) on every update.

use std::path::Path;

use crate::error::{io_err, OfflineError, Result};

fn read(path: &Path) -> Result<Vec<(i64, String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let mut parts = l.splitn(3, '\t');
            let bad = || {
                OfflineError::InvalidArgument(format!(
                    "{} line {}: expected <end micros>\\t<view>\\t<target>",
                    path.display(),
                    i + 1
                ))
            };
            let end = parts
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(bad)?;
            let view = parts.next().ok_or_else(bad)?.to_owned();
            let target = parts.next().ok_or_else(bad)?.to_owned();
            Ok((end, view, target))
        })
        .collect()
}

/// The end time last recorded for `view` materialized into `target`, if any.
pub fn last_materialized(state: &Path, view: &str, target: &str) -> Result<Option<i64>> {
    Ok(read(state)?
        .into_iter()
        .find(|(_, v, t)| v == view && t == target)
        .map(|e| e.0))
}

/// Records that `view` is materialized into `target` up to `end` (microseconds).
pub fn record_materialized(state: &Path, view: &str, target: &str, end: i64) -> Result<()> {
    if view.contains(['\t', '\n']) || target.contains(['\t', '\n']) {
        return Err(OfflineError::InvalidArgument(
            "view and target names cannot contain tabs or newlines".into(),
        ));
    }
    let mut entries = read(state)?;
    match entries
        .iter_mut()
        .find(|(_, v, t)| v == view && t == target)
    {
        Some(e) => e.0 = end,
        None => entries.push((end, view.to_owned(), target.to_owned())),
    }
    let text: String = entries
        .iter()
        .map(|(e, v, t)| format!("{e}\t{v}\t{t}\n"))
        .collect();
    let tmp = crate::join::temp_path(state);
    std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, state).map_err(|e| io_err(state, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_view_and_target_and_reads_them_back() {
        let dir = std::env::temp_dir().join(format!("quiver-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("state");
        assert_eq!(last_materialized(&f, "v", "t").expect("read"), None);
        record_materialized(&f, "v", "t", 5).expect("write");
        record_materialized(&f, "w", "t", 7).expect("write");
        record_materialized(&f, "v", "t", 9).expect("write");
        assert_eq!(last_materialized(&f, "v", "t").expect("read"), Some(9));
        assert_eq!(last_materialized(&f, "w", "t").expect("read"), Some(7));
        assert_eq!(last_materialized(&f, "v", "other").expect("read"), None);
        std::fs::write(&f, "garbage\n").expect("write");
        assert!(last_materialized(&f, "v", "t").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
