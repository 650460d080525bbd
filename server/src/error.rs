//! The one place engine errors become gRPC statuses.

use quiver_engine::{EngineError, RegistryError};
use tonic::{Code, Status};

/// Where an error happened decides what a corrupt file means: a file the caller handed us is
/// their mistake, our own files being damaged is data loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Reading, writing, registry or maintenance on the server's own data.
    Server,
    /// A snapshot file the caller supplied (LoadSnapshot, UploadSnapshot).
    CallerFile,
}

/// Maps an engine error to the status a client sees.
pub(crate) fn status_of(e: &EngineError, origin: Origin) -> Status {
    let code = match e {
        EngineError::InvalidArgument(_) => Code::InvalidArgument,
        EngineError::NotFound(_) => Code::NotFound,
        EngineError::Registry(RegistryError::UnknownFeature(_)) => Code::NotFound,
        EngineError::Registry(RegistryError::Incompatible(_)) => Code::FailedPrecondition,
        EngineError::Registry(_) => Code::InvalidArgument,
        EngineError::Corrupt { .. }
        | EngineError::UnsupportedVersion { .. }
        | EngineError::NeedsUpgrade { .. }
            if origin == Origin::CallerFile =>
        {
            Code::InvalidArgument
        }
        EngineError::Corrupt { .. } => Code::DataLoss,
        EngineError::UnsupportedVersion { .. } | EngineError::NeedsUpgrade { .. } => {
            Code::FailedPrecondition
        }
        // Writes are refused until an operator restarts the server; reads still work.
        EngineError::WalPoisoned(_) => Code::Unavailable,
        EngineError::CapacityExceeded(_) => Code::ResourceExhausted,
        // A full disk or quota is the machine's state, not a bug: retry once space is free.
        EngineError::Io { source, .. } if is_out_of_space(source) => Code::ResourceExhausted,
        EngineError::Io { .. } => Code::Internal,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Whether an I/O error means the disk (or the quota) is full.
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
