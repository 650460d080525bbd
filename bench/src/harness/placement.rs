//! Where the servers under test and the load generator run.
//!
//! `pinned`: every server under test on the first CPU this process may use, the harness (its
//! clients) on the others, the same for every system. Redis serves from one thread, so this
//! compares one core of Quiver with one core of Redis, and a figure means "per server core",
//! not "what two processes fighting over two cores managed". `shared`: wherever the scheduler
//! puts them. Pinning uses `taskset` (util-linux), so the harness needs no unsafe code.
//!
//! Either way, each server's own CPU time over a timed phase is read from `/proc/<pid>/stat`,
//! so results can be given per server CPU second next to wall-clock throughput.

use std::process::Command;

use clap::ValueEnum;

use crate::{BenchError, Result};

/// `--placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    /// Servers on one CPU, the harness on the others.
    Pinned,
    /// No pinning.
    Shared,
}

/// The CPU sets of one run: None when shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement(Option<CpuSets>);

/// Pinned: `taskset -c` lists of the servers under test and of the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CpuSets {
    server: String,
    client: String,
}

impl Placement {
    /// The placement `arg` asks for (default: pinned when this process may use at least two
    /// CPUs, else shared).
    pub(crate) fn resolve(arg: Option<PlacementArg>) -> Result<Self> {
        let cpus = allowed_cpus()?;
        let pinned = match arg {
            Some(PlacementArg::Pinned) if cpus.len() < 2 => {
                return Err(BenchError::InvalidArgument(format!(
                    "--placement pinned needs two CPUs; this process may use {cpus:?}"
                )))
            }
            Some(PlacementArg::Pinned) => true,
            Some(PlacementArg::Shared) => false,
            None => cpus.len() >= 2,
        };
        if !pinned {
            return Ok(Self(None));
        }
        let list = |c: &[usize]| c.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        Ok(Self(Some(CpuSets {
            server: list(&cpus[..1]),
            client: list(&cpus[1..]),
        })))
    }

    /// `pinned` or `shared`, as the JSON says it.
    pub(crate) fn name(&self) -> &'static str {
        if self.0.is_some() {
            "pinned"
        } else {
            "shared"
        }
    }

    /// The servers' CPU list (`taskset -c` syntax), if pinned.
    pub(crate) fn server_cpus(&self) -> Option<&str> {
        self.0.as_ref().map(|c| c.server.as_str())
    }

    /// The harness's CPU list, if pinned.
    pub(crate) fn client_cpus(&self) -> Option<&str> {
        self.0.as_ref().map(|c| c.client.as_str())
    }

    /// Pins every thread of this process (and so every thread it starts later) to the
    /// harness's CPUs. A no-op when shared.
    pub(crate) fn pin_harness(&self) -> Result<()> {
        let Some(cpus) = self.client_cpus() else {
            return Ok(());
        };
        let pid = std::process::id().to_string();
        let out = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid])
            .output()
            .map_err(|e| BenchError::other("running taskset to pin the harness", e.to_string()))?;
        if !out.status.success() {
            return Err(BenchError::other(
                "pinning the harness with taskset",
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }
}

/// `cmd` run on the CPUs in `cpus` (through `taskset -c`, which execs it: the process id is
/// the server's own), or `cmd` itself when None.
pub(crate) fn pinned_command(cmd: Command, cpus: Option<&str>) -> Command {
    let Some(cpus) = cpus else {
        return cmd;
    };
    let mut wrapped = Command::new("taskset");
    wrapped
        .arg("-c")
        .arg(cpus)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
fn allowed_cpus() -> Result<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| BenchError::other("reading /proc/self/status", e.to_string()))?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| BenchError::other("reading /proc/self/status", "no Cpus_allowed_list"))?;
    parse_cpu_list(list.trim())
        .ok_or_else(|| BenchError::other("reading /proc/self/status", format!("CPU list {list:?}")))
}

/// `0-3,5` → [0, 1, 2, 3, 5].
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`USER_HZ`, 100 on Linux for
/// every architecture this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used so far, if it is readable.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / TICKS_PER_SEC)
}

/// utime + stime of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the command
/// name (which is in parentheses and may itself hold spaces or parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_cpu_list("2"), Some(vec![2]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn cpu_ticks_are_fields_14_and_15_after_the_name() {
        // A name with a space and a parenthesis must not shift the fields.
        let stat = "4242 (qu ver) d) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 3 0 100";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
        // This process has used some CPU, and it only grows.
        let a = cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(std::process::id()).unwrap() >= a);
    }

    #[test]
    fn a_wrapped_command_runs_the_same_program_on_the_cpus() {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port").arg("7000").env("A", "1");
        let w = pinned_command(cmd, Some("0"));
        assert_eq!(w.get_program(), "taskset");
        let args: Vec<_> = w
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-c", "0", "redis-server", "--port", "7000"]);
        assert_eq!(w.get_envs().count(), 1);
        let plain = pinned_command(Command::new("x"), None);
        assert_eq!(plain.get_program(), "x");
    }
}
