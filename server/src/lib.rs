//! Quiver's server side: the gRPC front over the engine, and the `quiver` command line.
//!
//! # Layout
//! - `server`: start, recover in the background, serve, shut down gracefully.
//! - `workers`: thread-per-core serving (an acceptor and a runtime per worker thread).
//! - `service`: `quiver.v1.FeatureStore`, the native columnar API.
//! - `feast`: `feast.serving.ServingService`, wire-compatible with Feast.
//! - `codec`: the protobuf codec (bad request bytes are INVALID_ARGUMENT).
//! - `convert`: protobuf messages ⇄ engine keys, rows (both directions), result columns and
//!   the registry.
//! - `error`: the single engine-error → gRPC-status mapping.
//! - `admission`: load shedding on the transport, before a request's body is read.
//! - `auth`: bearer-token authentication.
//! - `limits`: the bounds on what one request may ask for.
//! - `state`: what handlers share: the engine once recovered, limits, metrics.
//! - `metrics`: Prometheus counters and histograms and their HTTP endpoint.
//! - `config`: the server configuration (file, environment, flags).
//! - [`client`]: connecting to a server (token, TLS, timeouts, retries), for the CLI, the
//!   tests and the benchmarks.
//! - `cli`: the `quiver` subcommands, a module per command group.
//! - `proto`: generated code.

mod admission;
mod auth;
mod cli;
pub mod client;
#[doc(hidden)]
pub mod codec;
mod config;
mod convert;
mod demo;
mod error;
mod feast;
/// Entry points for the `requests` fuzz target in `fuzz/` (not a stable API).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod limits;
mod metrics;
mod online;
pub mod proto;
mod server;
mod service;
mod state;
#[cfg(test)]
mod testing;
mod workers;

pub use cli::{run_cli, run_words, Cli};
pub use config::{ConfigError, ServerConfig, Threading};
pub use server::{run, shutdown_signal, OnReady, Ready, ServeError};
