//! Process memory readings, from `/proc` (Linux only).

use crate::{BenchError, Result};

/// `AT_PAGESZ` in the ELF auxiliary vector.
const AT_PAGESZ: u64 = 6;

/// Resident set size of this process in bytes (its `statm` × page size).
pub fn rss_bytes() -> Result<u64> {
    rss_of(std::process::id())
        .ok_or_else(|| BenchError::other("reading /proc/self/statm", "no resident set size"))
}

/// Resident set size of process `pid` in bytes, if it can be read (`/proc/<pid>/statm`).
pub(crate) fn rss_of(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// [`rss_of`] a server process, failing when it cannot be read (the process is gone).
pub(crate) fn rss_of_proc(proc: &quiver_testkit::Proc) -> Result<u64> {
    rss_of(proc.pid()).ok_or_else(|| {
        BenchError::other(
            format!("reading the memory of {} ({})", proc.name(), proc.pid()),
            "no /proc/<pid>/statm",
        )
    })
}

/// The page size from the auxiliary vector (statm counts pages); 4 KiB if it cannot be read.
fn page_size() -> u64 {
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    auxv.chunks_exact(16)
        .find_map(|pair| {
            let (k, v) = pair.split_at(8);
            let k = u64::from_ne_bytes(k.try_into().ok()?);
            let v = u64::from_ne_bytes(v.try_into().ok()?);
            (k == AT_PAGESZ && v.is_power_of_two()).then_some(v)
        })
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_grows_when_memory_is_touched() {
        let before = rss_bytes().unwrap();
        assert!(before > 0);
        let block = vec![1u8; 64 << 20];
        let after = rss_bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        drop(std::hint::black_box(block));
    }
}
