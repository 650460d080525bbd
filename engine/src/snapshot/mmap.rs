//! The engine's only memory map, and its only unsafe code.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// A read-only view of the first `len` bytes of a snapshot file.
#[derive(Debug)]
pub(super) struct ReadOnlyMap {
    map: Mmap,
}

impl ReadOnlyMap {
    /// Maps `len` bytes of `file`, which the caller opened read-only and measured.
    pub(super) fn new(file: &File, len: usize) -> io::Result<Self> {
        // SAFETY: memmap2 requires that the mapped bytes are not modified or truncated while
        // the map lives, since `&[u8]` promises immutable memory. Quiver never writes a
        // snapshot file after it is published: the writer fills a temporary file and renames
        // it into place, so a replacement is a new inode and this mapping keeps the old one.
        // The file is opened read-only here and the map is never made writable. Another
        // process truncating or rewriting the file in place is outside that contract (it
        // would raise SIGBUS or show changed bytes); docs/formats.md tells operators to
        // treat published snapshots as immutable.
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(Self { map })
    }

    /// The mapped bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.map
    }
}
