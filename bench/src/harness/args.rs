//! Flags several subcommands share, flattened into each (`#[command(flatten)]`), and the range
//! checks every subcommand runs on its flags. A subcommand whose flag means something more
//! specific rewords its help with `#[command(mut_arg(..))]`; names and defaults stay shared.

use std::fmt::Display;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::keys::Dist;
use crate::{BenchError, Result};

/// `--seed`, `--shards` and `--dir` of the in-process workloads (`engine`, `restart`, `load`,
/// `write`).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Seed of the dataset and of the key sequences.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Shards per view.
    #[arg(long, default_value_t = 64)]
    pub shards: usize,
    /// Parent of the scratch directory (default: the system temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `--seed`, `--quiver-bin` and `--dir` of the workloads that start servers (`grpc`,
/// `overload`, `compare`).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Seed of the dataset and the key sequences.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The quiver binary (default: target/release/quiver, built if needed).
    #[arg(long)]
    pub quiver_bin: Option<PathBuf>,
    /// Parent of the scratch directories (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Which key distributions to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistArg {
    /// Uniform key choice only.
    Uniform,
    /// Zipf(0.99) key choice only.
    Zipf,
    /// Both, uniform first.
    Both,
}

impl DistArg {
    /// The distributions, in measurement order.
    pub(crate) fn dists(self) -> Vec<Dist> {
        match self {
            Self::Uniform => vec![Dist::Uniform],
            Self::Zipf => vec![Dist::Zipf],
            Self::Both => vec![Dist::Uniform, Dist::Zipf],
        }
    }
}

/// A refused flag.
pub(crate) fn refuse<T>(message: impl Into<String>) -> Result<T> {
    Err(BenchError::InvalidArgument(message.into()))
}

/// `flag` must be within `lo..=hi`.
pub(crate) fn in_range<T: PartialOrd + Display>(flag: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v < lo || v > hi {
        return refuse(format!("{flag} must be between {lo} and {hi}, got {v}"));
    }
    Ok(())
}

/// `--entities` must be `lo` to 2^32 - 1 (key spaces index entities with `u32`).
pub(crate) fn entities(v: u64, lo: u64) -> Result<()> {
    in_range("--entities", v, lo, u64::from(u32::MAX))
}

/// A measurement's `--duration` must be positive and at most an hour.
pub(crate) fn duration(secs: f64) -> Result<()> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return refuse(format!(
            "--duration must be between 0 and 3600 seconds, got {secs}"
        ));
    }
    Ok(())
}

/// `flag` must be at least 1.
pub(crate) fn positive(flag: &str, v: u64) -> Result<()> {
    if v == 0 {
        return refuse(format!("{flag} must be at least 1"));
    }
    Ok(())
}

/// Every count in the list `flag` must be within `1..=max`, and there must be one.
pub(crate) fn counts(flag: &str, what: &str, v: &[usize], max: usize) -> Result<()> {
    if v.is_empty() || v.iter().any(|&x| x == 0 || x > max) {
        return refuse(format!(
            "{flag} must list {what} between 1 and {max}, got {v:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_flag() {
        assert!(in_range("--repeats", 5, 1, 100).is_ok());
        let e = in_range("--repeats", 0, 1, 100).unwrap_err().to_string();
        assert!(
            e.contains("--repeats must be between 1 and 100, got 0"),
            "{e}"
        );
        assert!(duration(0.0).is_err() && duration(f64::NAN).is_err() && duration(1.0).is_ok());
        assert!(counts("--writers", "counts", &[], 8).is_err());
        assert!(counts("--writers", "counts", &[1, 9], 8).is_err());
        assert!(counts("--writers", "counts", &[1, 8], 8).is_ok());
    }
}
