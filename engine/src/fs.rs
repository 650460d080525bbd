//! The data directory on disk: its layout names, durable publication of files, and the one
//! mapping of I/O and corruption failures to [`EngineError`].
//!
//! ```text
//! <dir>/LOCK                                held while open: one process per directory
//! <dir>/MANIFEST                            registry, checkpoint sequence, snapshot per view
//! <dir>/wal/<first seq, 20 digits>.log      write-ahead log segments
//! <dir>/snapshots/<view>-<seq, 20 digits>.qsnap   immutable snapshot files (the bases)
//! ```
//!
//! Every file other processes may read is *published*: written under a temporary name,
//! fsynced, renamed over its final name, and the directory fsynced, so that after a crash the
//! final name holds either the old or the new contents, never a mix (docs/formats.md, "Data
//! directory").

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{EngineError, Result};

/// The manifest: the data directory's root of trust.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Subdirectory of the WAL segments.
pub const WAL_DIR: &str = "wal";
/// Subdirectory of the snapshot files.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Held (locked) by the process that has the directory open.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// File extension of published snapshot files.
pub const SNAPSHOT_EXTENSION: &str = "qsnap";
/// Suffix of a snapshot writer's temporary file (`.<final name>.<pid>-<n>.qsnap-tmp`, in the
/// final file's directory). A crash can leave one behind; opening a directory deletes them.
pub const SNAPSHOT_TEMP_SUFFIX: &str = ".qsnap-tmp";
/// File extension of WAL segments.
pub(crate) const SEGMENT_EXTENSION: &str = "log";
/// Extension added to a file while it is written, before it is published.
pub(crate) const TEMP_EXTENSION: &str = "tmp";
/// Extension given to WAL data that salvage set aside (kept for the operator, never read).
pub(crate) const DROPPED_EXTENSION: &str = "dropped";

/// Path of the snapshot a checkpoint at `seq` writes for `view`, relative to the data
/// directory (the form the manifest records).
pub(crate) fn checkpoint_snapshot(view: &str, seq: u64) -> PathBuf {
    PathBuf::from(SNAPSHOT_DIR).join(format!("{view}-{seq:020}.{SNAPSHOT_EXTENSION}"))
}

/// Path of the `n`th candidate name for a snapshot bulk-loaded into `view` at `stamp`
/// (microseconds), relative to the data directory.
pub(crate) fn loaded_snapshot(view: &str, stamp: i64, n: u64) -> PathBuf {
    let name = match n {
        0 => format!("{view}-load-{stamp}.{SNAPSHOT_EXTENSION}"),
        n => format!("{view}-load-{stamp}-{n}.{SNAPSHOT_EXTENSION}"),
    };
    PathBuf::from(SNAPSHOT_DIR).join(name)
}

/// Where the manifest of `dir` is written before it is published.
pub(crate) fn manifest_temp(dir: &Path) -> PathBuf {
    dir.join(format!("{MANIFEST_FILE}.{TEMP_EXTENSION}"))
}

/// An I/O failure on `path`.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `path` holds bytes Quiver did not write (or no longer reads back) at `offset`.
pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> EngineError {
    EngineError::Corrupt {
        file: path.display().to_string(),
        offset,
        reason: reason.into(),
    }
}

/// The directory a path's entry lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Directories cannot be opened for fsync on this platform; a rename is as durable as the OS
/// makes it.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Publishes `file`, fully written at `tmp`, as `path`: fsync, rename, fsync the directory.
pub(crate) fn publish(file: &File, tmp: &Path, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| io_err(tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(parent_dir(path))
}

/// Writes `bytes` to `tmp` and publishes it as `path`.
pub(crate) fn write_durably(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(tmp).map_err(|e| io_err(tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(tmp, e))?;
    publish(&f, tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_are_what_docs_formats_describe() {
        assert_eq!(
            checkpoint_snapshot("user_stats", 42),
            Path::new("snapshots/user_stats-00000000000000000042.qsnap")
        );
        assert_eq!(
            loaded_snapshot("v", 7, 0),
            Path::new("snapshots/v-load-7.qsnap")
        );
        assert_eq!(
            loaded_snapshot("v", 7, 2),
            Path::new("snapshots/v-load-7-2.qsnap")
        );
        assert_eq!(manifest_temp(Path::new("d")), Path::new("d/MANIFEST.tmp"));
        assert_eq!(parent_dir(Path::new("x.qsnap")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/x.qsnap")), Path::new("a"));
    }

    #[test]
    fn write_durably_replaces_the_whole_file() {
        let tmp_dir = crate::testing::TempDir::new("fs");
        let dir = tmp_dir.path();
        let (tmp, path) = (dir.join("f.tmp"), dir.join("f"));
        write_durably(&tmp, &path, b"first, longer contents").unwrap();
        write_durably(&tmp, &path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!tmp.exists());
        let missing = dir.join("no-such-dir").join("f");
        let err = write_durably(&missing.with_extension("tmp"), &missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }
}
