//! Time, injected. Every TTL decision in the engine asks a [`Clock`], so tests can move time
//! forward by hand instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch. All engine timestamps use this unit.
pub type Micros = i64;

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;

/// A source of "now" for TTL checks and the reclaimer.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in microseconds since the Unix epoch.
    fn now_micros(&self) -> Micros;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> Micros {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // A clock set before 1970 is a broken host; treat it as the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to; cloning shares the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A manual clock reading `now`.
    pub fn new(now: Micros) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: Micros) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward (or backward, with a negative delta).
    pub fn advance(&self, delta: Micros) {
        self.0.fetch_add(delta, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}
