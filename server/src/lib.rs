//! Quiver's server side: the command-line tool today; the gRPC services arrive with the server
//! issue.
//!
//! # Layout
//! - `cli`: argument parsing and the subcommands of the `quiver` binary.

#![deny(unsafe_code)]

mod cli;

pub use cli::{run, Cli};
