//! Scratch data directories for the durable-engine benchmarks, and what can be said about the
//! disk under them: its filesystem, and how to push their files out of the page cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use quiver_testkit::TempDir;

use crate::error::io;
use crate::{BenchError, Result};

/// A scratch directory `<parent>/quiver-bench-<label>-…`, removed with everything in it when
/// dropped; `parent` defaults to the system temporary directory (`--dir` picks the disk).
pub fn scratch_dir(parent: Option<&Path>, label: &str) -> Result<TempDir> {
    TempDir::create(parent, &format!("bench-{label}")).map_err(io("creating a scratch directory"))
}

/// The mount that holds `path`, as `"<fstype> on <device> (<mount point>)"`, from
/// `/proc/self/mounts`; `"unknown"` if it cannot be read.
pub fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|mounts| mount_of(&mounts, &path))
        .unwrap_or_else(|| "unknown".into())
}

/// The longest mount point of `mounts` (the `/proc/self/mounts` format) that contains `path`.
fn mount_of(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, point, fstype) = (f.next()?, f.next()?, f.next()?);
            // The kernel escapes blanks in mount points as octal (`\040`).
            let point = point.replace("\\040", " ");
            path.starts_with(&point)
                .then(|| (point.len(), format!("{fstype} on {device} ({point})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, desc)| desc)
}

/// Asks the kernel to drop every file under `dir` from the page cache
/// (`POSIX_FADV_DONTNEED` through GNU `dd iflag=nocache count=0`), so the next read comes from
/// the disk. Only clean pages go: call it on closed, fsynced files. Affects no other files, so
/// it is fair to other users of a shared machine, unlike `/proc/sys/vm/drop_caches`. Returns
/// the number of files.
pub fn drop_from_page_cache(dir: &Path) -> Result<u64> {
    let mut files = 0;
    for path in files_under(dir)? {
        let status = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .map_err(io(
                "running dd (GNU coreutils) to drop files from the page cache",
            ))?;
        if !status.success() {
            return Err(BenchError::other(
                format!("dd iflag=nocache on {}", path.display()),
                status.to_string(),
            ));
        }
        files += 1;
    }
    Ok(files)
}

/// Total size of the regular files under `dir`.
pub fn bytes_under(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for p in files_under(dir)? {
        total += std::fs::metadata(&p)
            .map_err(io(format!("reading the size of {}", p.display())))?
            .len();
    }
    Ok(total)
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let what = || format!("listing {}", dir.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(what()))? {
        let entry = entry.map_err(io(what()))?;
        let ty = entry.file_type().map_err(io(what()))?;
        if ty.is_dir() {
            out.extend(files_under(&entry.path())?);
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_drops_every_file_under_a_scratch_dir() {
        let dir = scratch_dir(None, "test").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/file"), b"12345").unwrap();
        std::fs::write(dir.join("top"), b"123").unwrap();
        assert_eq!(bytes_under(&path).unwrap(), 8);
        assert_eq!(drop_from_page_cache(&path).unwrap(), 2);
        assert!(path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("quiver-bench-test-")));
    }

    #[test]
    fn the_longest_containing_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw,relatime 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      tmpfs /tmpfoo tmpfs rw 0 0\n\
                      /dev/vdb /mnt/my\\040disk xfs rw 0 0\n";
        let at = |p: &str| mount_of(mounts, Path::new(p));
        assert_eq!(at("/tmp/x").as_deref(), Some("tmpfs on tmpfs (/tmp)"));
        assert_eq!(at("/work/main").as_deref(), Some("ext4 on /dev/vda (/)"));
        assert_eq!(at("/tmpx").as_deref(), Some("ext4 on /dev/vda (/)"));
        assert_eq!(
            at("/mnt/my disk/a").as_deref(),
            Some("xfs on /dev/vdb (/mnt/my disk)")
        );
        assert_eq!(mount_of("", Path::new("/")), None);
    }
}
