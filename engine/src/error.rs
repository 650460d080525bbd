//! The engine's one error type.

use crate::registry::RegistryError;

/// Everything the engine can refuse or fail at. User mistakes, corruption and I/O failures
/// are distinct variants so the server can map each to the right status exactly once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The registry is invalid or a change to it was refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The caller asked for something malformed (wrong type, bad key, oversized batch).
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller named a view or feature that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Bytes read back from memory or disk do not decode: a bug or on-disk damage.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// File (or in-memory structure) the bytes came from.
        file: String,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file was written by a newer Quiver with a format this build cannot read.
    #[error(
        "{file} has format version {found}; this build reads version {supported} (upgrade Quiver)"
    )]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// Version found in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A file has an old format version that this build no longer reads directly.
    #[error("{file} has format version {found}, older than the oldest this build reads ({oldest}); it must be upgraded (rewritten) first")]
    NeedsUpgrade {
        /// The file.
        file: String,
        /// Version found in the file.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
    },
    /// A write or fsync of the write-ahead log failed earlier; it refuses writes until reopened.
    #[error("write-ahead log poisoned: {0}")]
    WalPoisoned(String),
    /// A store structure reached a hard size limit.
    #[error("capacity exceeded: {0}")]
    CapacityExceeded(String),
}

/// Shorthand for engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
