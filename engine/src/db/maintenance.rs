//! The background thread: reclaims expired values and checkpoints when due.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{CheckpointStats, Db};
use crate::EngineError;

/// Runs reclaim and automatic checkpoints for a [`Db`] until dropped.
#[derive(Debug)]
pub struct Maintenance {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// Starts the thread: every `tick` it reclaims each shard a bounded step and checks
    /// whether a checkpoint is due. `on_checkpoint` hears about each automatic checkpoint.
    pub fn start(
        db: Arc<Db>,
        tick: Duration,
        on_checkpoint: impl Fn(Result<CheckpointStats, EngineError>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("quiver-maintenance".into())
            .spawn(move || loop {
                let views = db.registry().views().len();
                for _ in 0..views * db.store.shard_count() {
                    db.store.reclaim_step(4096);
                }
                if db.checkpoint_due() {
                    on_checkpoint(db.checkpoint());
                }
                let (lock, cv) = &*flag;
                let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (guard, _) = cv
                    .wait_timeout_while(guard, tick, |stopped| !*stopped)
                    .unwrap_or_else(|p| p.into_inner());
                if *guard {
                    return;
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
