//! The background thread: reclaims expired values and checkpoints when due.

use std::sync::Arc;
use std::time::Duration;

use super::{CheckpointStats, Db};
use crate::background::Periodic;
use crate::EngineError;

/// How long the first retry of a failed automatic checkpoint waits.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries of a failing automatic checkpoint.
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// `wait` in ticks of `tick` (at least one).
fn backoff_ticks(tick: Duration, wait: Duration) -> u32 {
    let ticks = wait.as_millis() / tick.as_millis().max(1);
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

/// Runs reclaim and automatic checkpoints for a [`Db`] until dropped.
#[derive(Debug)]
pub struct Maintenance {
    _thread: Periodic,
}

impl Maintenance {
    /// Starts the thread: every `tick` it reclaims each shard a bounded step and checks
    /// whether a checkpoint is due. `on_checkpoint` hears about each automatic checkpoint; a
    /// failed one is retried after 1 s, then twice as long after each further failure, up to
    /// a minute.
    pub fn start(
        db: Arc<Db>,
        tick: Duration,
        on_checkpoint: impl Fn(Result<CheckpointStats, EngineError>) + Send + 'static,
    ) -> std::io::Result<Self> {
        // After a failed checkpoint (a full disk, say) the next attempt waits, twice as long
        // after each failure in a row: retrying every tick would only fill the log.
        let first = backoff_ticks(tick, FIRST_RETRY);
        let most = backoff_ticks(tick, LONGEST_RETRY);
        let (mut backoff, mut wait) = (0u32, 0u32);
        let thread = Periodic::spawn("quiver-maintenance", tick, move || {
            let views = db.registry().views().len();
            for _ in 0..views * db.store.shard_count() {
                db.store.reclaim_step(4096);
            }
            if wait > 0 {
                wait -= 1;
                return;
            }
            if db.checkpoint_due() {
                let result = db.checkpoint();
                backoff = match result {
                    Ok(_) => 0,
                    Err(_) => backoff.saturating_mul(2).clamp(first, most),
                };
                wait = backoff;
                on_checkpoint(result);
            }
        })?;
        Ok(Self { _thread: thread })
    }
}
