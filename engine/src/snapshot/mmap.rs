//! The engine's only memory map, and its only unsafe code.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapOptions};

/// Smallest map worth backing with 2 MiB pages: one huge page.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

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
        huge_pages(file, &map);
        Ok(Self { map })
    }

    /// The mapped bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Asks the CPU to start loading the cache line at `offset` (a hint: a batched lookup
    /// issues one per key before reading any, so their cache and TLB misses overlap instead
    /// of queuing one behind another). Offsets past the end are ignored.
    #[inline]
    pub(super) fn prefetch(&self, offset: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(byte) = self.map.get(offset) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: PREFETCHT0 only hints the cache: it never faults, never writes memory or
            // registers, and has no effect a program can observe but timing. The address is
            // inside the live map anyway (it comes from a checked index).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast()) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = offset;
    }
}

/// Maps a large snapshot with 2 MiB pages where the kernel can (Linux, a filesystem whose page
/// cache holds large folios, such as ext4 since 6.16 or XFS), and reads it in before serving.
///
/// Why: a get touches two random places per key (index slot, entry), and a multi-gigabyte map
/// in 4 KiB pages misses the TLB on nearly every one; under virtualisation each miss is a
/// two-level page walk. With huge pages a 1M-entity view needs 40 TLB entries instead of
/// 18,000. The page cache only holds 2 MiB folios for pages it reads itself under a
/// `MADV_HUGEPAGE` mapping, while a freshly written file sits in the small folios its writes
/// made; so the clean cached pages are dropped first (`POSIX_FADV_DONTNEED`; a page another
/// mapping still uses is kept) and read back in (`MADV_POPULATE_READ`), before the caller
/// serves from the map, so the first requests do not fault. Every step is advice: where one is
/// refused, the map stays as it is, in small pages.
#[cfg(target_os = "linux")]
fn huge_pages(file: &File, map: &Mmap) {
    use std::os::fd::AsRawFd;
    if map.len() < HUGE_PAGE || map.advise(memmap2::Advice::HugePage).is_err() {
        return;
    }
    // SAFETY: posix_fadvise reads no Rust memory: it takes a file descriptor that `file`
    // keeps open for the call and two integers, and only advises the page cache. Dropped
    // pages are clean (a published snapshot was fsynced) and are read back from the file on
    // the next access, so no byte the map shows changes.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let _ = map.advise(memmap2::Advice::PopulateRead);
}

#[cfg(not(target_os = "linux"))]
fn huge_pages(_file: &File, _map: &Mmap) {}
