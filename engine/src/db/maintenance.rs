//! The background thread: reclaims expired values and checkpoints when due.

use std::sync::Arc;
use std::time::Duration;

use super::{CheckpointStats, Db};
use crate::background::Periodic;
use crate::EngineError;

/// Runs reclaim and automatic checkpoints for a [`Db`] until dropped.
#[derive(Debug)]
pub struct Maintenance {
    _thread: Periodic,
}

impl Maintenance {
    /// Starts the thread: every `tick` it reclaims each shard a bounded step and checks
    /// whether a checkpoint is due. `on_checkpoint` hears about each automatic checkpoint.
    pub fn start(
        db: Arc<Db>,
        tick: Duration,
        on_checkpoint: impl Fn(Result<CheckpointStats, EngineError>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let thread = Periodic::spawn("quiver-maintenance", tick, move || {
            let views = db.registry().views().len();
            for _ in 0..views * db.store.shard_count() {
                db.store.reclaim_step(4096);
            }
            if db.checkpoint_due() {
                on_checkpoint(db.checkpoint());
            }
        })?;
        Ok(Self { _thread: thread })
    }
}
