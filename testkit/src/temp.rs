//! Temporary directories.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh directory, removed with everything in it when dropped: at the end of a test or run
/// and on every early return or panic in between.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `quiver-<tag>-…` under the system temporary directory; panics if it cannot
    /// (a test has nothing better to do).
    pub fn new(tag: &str) -> Self {
        Self::create(None, tag)
            .unwrap_or_else(|e| panic!("creating a temporary directory for {tag:?}: {e}"))
    }

    /// Creates `<parent>/quiver-<tag>-<pid>-<n>-<nanos>`; `parent` defaults to the system
    /// temporary directory. The process id, a per-process counter and the clock make the name
    /// unique across concurrent tests and processes.
    pub fn create(parent: Option<&Path>, tag: &str) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(
            "quiver-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                eprintln!("warning: could not remove {}: {e}", self.path.display());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_unique_and_removed_with_its_contents() {
        let (a, b) = (TempDir::new("kit"), TempDir::new("kit"));
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        std::fs::create_dir(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/file"), b"x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn is_created_under_a_parent() {
        let parent = TempDir::new("kit-parent");
        let child = TempDir::create(Some(parent.path()), "child").unwrap();
        assert_eq!(child.path().parent(), Some(parent.path()));
        let name = child.path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with("quiver-child-"), "{name}");
    }
}
