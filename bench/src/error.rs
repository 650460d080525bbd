//! The harness's one error type.

use quiver_engine::{EngineError, RegistryError};

/// Everything a benchmark run can fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The engine refused or failed an operation.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// The bundled registry does not parse, or does not match the dataset.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// Reading process information failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A flag is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A system under test returned something other than the dataset: its timings are void.
    #[error("wrong answer: {0}")]
    WrongAnswer(String),
    /// A histogram could not be created.
    #[error("histogram: {0}")]
    Histogram(String),
    /// The dataset generator and the registry disagree about the view's schema.
    #[error("dataset and registry disagree: {0}")]
    Schema(String),
}

/// Shorthand for harness results.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Wraps an I/O error with what was being done: `.map_err(io("reading x"))`.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

impl BenchError {
    /// An I/O-kind failure that has no OS error behind it: `what` failed because of `why`.
    pub(crate) fn other(what: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Io {
            what: what.into(),
            source: std::io::Error::other(why.into()),
        }
    }
}
