//! Work spread over scoped threads, and a progress line for terminals.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{OfflineError, Result};

/// The number of worker threads to use when the caller says 0.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work(state, item)` for items `0..items` on `threads` threads, each with its own state
/// from `init`; returns the states. Items are handed out one at a time, so uneven items
/// balance. The first error stops every thread and is returned.
pub(crate) fn for_each_item<S: Send>(
    threads: usize,
    items: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> Result<()> + Sync,
) -> Result<Vec<S>> {
    let threads = threads.clamp(1, items.max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let run = || -> Result<S> {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= items {
                break;
            }
            if let Err(e) = work(&mut state, i) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(state)
    };
    if threads == 1 {
        return Ok(vec![run()?]);
    }
    let results: Vec<Result<S>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(run)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(OfflineError::InvalidArgument(
                        "a worker thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

/// A one-line progress display on stderr, redrawn at most a few times a second, shown only
/// when stderr is a terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    label: Mutex<String>,
    total: AtomicU64,
    done: AtomicU64,
    last: Mutex<Option<Instant>>,
    enabled: bool,
}

impl Progress {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            label: Mutex::new(String::new()),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last: Mutex::new(None),
            enabled: enabled && std::io::stderr().is_terminal(),
        }
    }

    /// Starts a new phase of `total` steps.
    pub(crate) fn phase(&self, label: String, total: u64) {
        if let Ok(mut l) = self.label.lock() {
            *l = label;
        }
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.draw(true);
    }

    /// Counts `n` steps done.
    pub(crate) fn step(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.draw(false);
    }

    fn draw(&self, force: bool) {
        if !self.enabled {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if !force && last.is_some_and(|t| t.elapsed() < Duration::from_millis(150)) {
            return;
        }
        *last = Some(Instant::now());
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed).max(1),
        );
        let width = 30u64;
        let filled = (done.min(total) * width / total) as usize;
        let label = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{label} [{}{}] {done}/{total}",
            "#".repeat(filled),
            " ".repeat(width as usize - filled)
        );
        let _ = err.flush();
    }

    /// Clears the line.
    pub(crate) fn finish(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
