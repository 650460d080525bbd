//! The offline module's error type.

use quiver_engine::{EngineError, RegistryError};

/// What went wrong reading history, joining or materializing. Every variant names the file
/// (and, where it applies, the column) it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid Parquet, or could not be decoded.
    #[error("{path}: not a readable Parquet file: {reason}")]
    Parquet {
        /// The file.
        path: String,
        /// The decoder's message.
        reason: String,
    },
    /// A file's columns do not match what the registry declares; every problem is listed.
    #[error("{path}: columns do not match the registry:\n  {}", .problems.join("\n  "))]
    Schema {
        /// The file.
        path: String,
        /// One line per missing or wrongly typed column.
        problems: Vec<String>,
    },
    /// A value in a file cannot be used (a vector of the wrong dimension, a list with a null
    /// item where the store has no nulls, ...).
    #[error("{path}: column {column:?}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The output path exists already; nothing was written.
    #[error("{path} already exists; remove it or choose another output path")]
    OutputExists {
        /// The output path.
        path: String,
    },
    /// A bad request: unknown feature reference, view without offline source, bad time, ...
    #[error("{0}")]
    InvalidArgument(String),
    /// The registry could not be loaded or a reference did not resolve.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The engine refused something (building or loading a snapshot).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The offline module's result type.
pub type Result<T, E = OfflineError> = std::result::Result<T, E>;

/// Refuses an output path that exists already (nothing is overwritten).
pub(crate) fn output_exists(path: &std::path::Path) -> OfflineError {
    OfflineError::OutputExists {
        path: path.display().to_string(),
    }
}

/// Refuses `path` if something is there already.
pub(crate) fn refuse_existing(path: &std::path::Path) -> Result<()> {
    if path.exists() {
        return Err(output_exists(path));
    }
    Ok(())
}

pub(crate) fn io_err(path: &std::path::Path, source: std::io::Error) -> OfflineError {
    OfflineError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn parquet_err(path: &str, e: impl std::fmt::Display) -> OfflineError {
    OfflineError::Parquet {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
