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
    /// A store structure reached a hard size limit.
    #[error("capacity exceeded: {0}")]
    CapacityExceeded(String),
}

/// Shorthand for engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
