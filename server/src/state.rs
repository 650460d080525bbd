//! What every handler shares: the engine (once recovered), limits and metrics.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use quiver_engine::Db;
use tonic::Status;

use crate::config::ServerConfig;
use crate::limits::{ReadLimits, WriteLimits};
use crate::metrics::{Metrics, Rpc};

/// Shared server state.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Set once recovery has finished; until then data RPCs answer UNAVAILABLE.
    pub(crate) db: Arc<OnceLock<Arc<Db>>>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) read_limits: ReadLimits,
    pub(crate) write_limits: WriteLimits,
}

/// A request being handled (admission already happened on the transport, see
/// `admission`): records the call's outcome and duration when done.
#[derive(Debug)]
pub(crate) struct Call {
    rpc: Rpc,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Call {
    /// Records the outcome and passes it through.
    pub(crate) fn finish<T>(self, r: Result<T, Status>) -> Result<T, Status> {
        self.metrics
            .observe(self.rpc, self.started.elapsed(), r.is_ok());
        r
    }
}

impl AppState {
    pub(crate) fn new(config: ServerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            db: Arc::new(OnceLock::new()),
            read_limits: ReadLimits::new(&config),
            write_limits: WriteLimits::new(&config),
            config,
            metrics,
        }
    }

    /// Starts recording a call.
    pub(crate) fn begin(&self, rpc: Rpc) -> Call {
        Call {
            rpc,
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }

    /// The engine, or UNAVAILABLE while recovery is still running.
    pub(crate) fn db(&self) -> Result<Arc<Db>, Status> {
        self.db.get().cloned().ok_or_else(|| {
            Status::unavailable("recovering: the data directory is being loaded; retry shortly")
        })
    }
}

/// Runs blocking engine work (fsyncs, file I/O) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}
