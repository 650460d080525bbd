//! The servers a comparison runs: the real `quiver` binary and `redis-server`, each a child
//! process on a free loopback port with its own scratch directory, killed and removed when
//! dropped (at the end of a run, on an error, on Ctrl-C).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quiver_server::client::{ClientError, Connect, NativeClient};
use quiver_testkit::{find_or_build, free_port, Proc, Profile, Signal, TempDir};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::clients::raw::RawReader;
use crate::clients::resp::RespConn;
use crate::error::io;
use crate::harness::placement::pinned_command;
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};

/// How long a process may take to exit after a signal.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Polling interval while waiting for readiness.
const POLL: Duration = Duration::from_millis(5);

/// The `quiver` binary: `explicit` (`--quiver-bin`), else the one of the tree this harness was
/// built in, built first when cargo is at hand. `release` asks for the release build whatever
/// the harness's own profile (a smoke run in CI reuses the debug build the tests made).
pub(crate) fn quiver_binary(explicit: Option<&Path>, release: bool) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let profile = if release {
        Profile::Release
    } else {
        Profile::Current
    };
    find_or_build("quiver-server", "quiver", profile)
        .map_err(io("finding the quiver binary (or pass --quiver-bin)"))
}

/// What differs between the servers a comparison runs: how one starts on a scratch directory
/// and a port, and how to tell it is ready to be measured.
pub(crate) trait ServerSpec {
    /// The process's name in errors.
    const NAME: &'static str;
    /// What the server is once it answers ("SERVING", "ready").
    const READY: &'static str;
    /// How long starting (recovery, loading) may take before it counts as failed.
    fn start_timeout(&self) -> Duration;
    /// The CPUs the server runs on (`taskset -c` list), or None for anywhere.
    fn cpus(&self) -> Option<&str>;
    /// The command that runs the server on `addr` with its files in `dir`, and its log file.
    fn command(&self, dir: &TempDir, addr: SocketAddr) -> Result<(Command, PathBuf)>;
    /// Whether the server at `addr` answers as ready.
    async fn ready(addr: SocketAddr) -> bool;
}

/// A running server on a free loopback port with its own scratch directory, killed and the
/// directory removed when dropped.
#[derive(Debug)]
pub(crate) struct Server<S> {
    // Field order: the process is killed before its directory is removed.
    proc: Proc,
    /// Its address.
    pub(crate) addr: SocketAddr,
    spec: S,
    dir: TempDir,
}

/// A running `quiver serve` with its own data directory.
pub(crate) type QuiverServer = Server<QuiverSpec>;
/// A running redis-server with its own directory.
pub(crate) type RedisServer = Server<RedisSpec>;

impl<S: ServerSpec> Server<S> {
    /// Starts a server on a fresh directory under `parent` and waits until it is ready.
    pub(crate) async fn start(spec: S, parent: Option<&Path>, label: &str) -> Result<Self> {
        let dir = scratch_dir(parent, label)?;
        let addr = free_port().map_err(io("probing for a free port"))?;
        let proc = Self::spawn(&spec, &dir, addr)?;
        let mut s = Self {
            proc,
            addr,
            spec,
            dir,
        };
        s.wait_ready().await?;
        Ok(s)
    }

    fn spawn(spec: &S, dir: &TempDir, addr: SocketAddr) -> Result<Proc> {
        let (cmd, log) = spec.command(dir, addr)?;
        let cmd = pinned_command(cmd, spec.cpus());
        Proc::spawn(S::NAME, cmd, &log).map_err(io(format!("starting {}", S::NAME)))
    }

    /// Polls [`ServerSpec::ready`] until it holds; returns how long that took. Fails, quoting
    /// the end of the log, when the process exits first or the start timeout passes.
    async fn wait_ready(&mut self) -> Result<Duration> {
        let (start, timeout) = (Instant::now(), self.spec.start_timeout());
        loop {
            self.proc.check_running().map_err(io(format!(
                "waiting for {} to be {}",
                S::NAME,
                S::READY
            )))?;
            if start.elapsed() > timeout {
                return Err(BenchError::Io {
                    what: format!(
                        "{} not {} after {timeout:?}; log tail:\n{}",
                        S::NAME,
                        S::READY,
                        self.proc.log_tail(20)
                    ),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
            if S::ready(self.addr).await {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the server with `signal` (TERM: graceful; KILL: a crash), starts it again on the
    /// same directory and port, and returns the time from spawn until it is ready.
    pub(crate) async fn restart(&mut self, signal: Signal) -> Result<Duration> {
        self.proc
            .stop(signal, EXIT_TIMEOUT)
            .map_err(io(format!("stopping {}", S::NAME)))?;
        let start = Instant::now();
        self.proc = Self::spawn(&self.spec, &self.dir, self.addr)?;
        self.wait_ready().await?;
        Ok(start.elapsed())
    }

    /// The server process.
    pub(crate) fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// How to run a Quiver server.
#[derive(Debug, Clone)]
pub(crate) struct QuiverSpec {
    /// The binary.
    pub(crate) bin: PathBuf,
    /// Registry TOML file for a new data directory.
    pub(crate) registry: PathBuf,
    /// `always`, `never` or `<N>ms`.
    pub(crate) fsync: String,
    /// Tokio worker threads of the server.
    pub(crate) worker_threads: usize,
    /// How long recovery may take before the start counts as failed.
    pub(crate) start_timeout: Duration,
    /// More lines of the server's config file (e.g. `max_concurrent_requests = 8`).
    pub(crate) extra_config: String,
    /// The CPUs it runs on (see [`crate::harness::placement`]), or None for anywhere.
    pub(crate) cpus: Option<String>,
}

impl ServerSpec for QuiverSpec {
    const NAME: &'static str = "quiver serve";
    const READY: &'static str = "SERVING";

    fn start_timeout(&self) -> Duration {
        self.start_timeout
    }

    fn cpus(&self) -> Option<&str> {
        self.cpus.as_deref()
    }

    fn command(&self, dir: &TempDir, addr: SocketAddr) -> Result<(Command, PathBuf)> {
        // Automatic checkpoints are off, as Redis runs with `save ""`: nothing but the measured
        // work runs in the background. The harness checkpoints explicitly where it matters.
        let config = dir.join("quiver.toml");
        std::fs::write(
            &config,
            format!(
                "checkpoint_wal_bytes = 0\ncheckpoint_interval_secs = 0\nworker_threads = {}\n\
                 fsync = \"{}\"\n{}\n",
                self.worker_threads, self.fsync, self.extra_config
            ),
        )
        .map_err(io(format!("writing {}", config.display())))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg("")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--registry")
            .arg(&self.registry)
            .env_remove("QUIVER_AUTH_TOKEN")
            .env_remove("QUIVER_LISTEN")
            .env_remove("QUIVER_DATA_DIR")
            .env("QUIVER_LOG", "warn");
        Ok((cmd, dir.join("quiver.log")))
    }

    async fn ready(addr: SocketAddr) -> bool {
        health(addr).await == Some(ServingStatus::Serving)
    }
}

impl QuiverServer {
    /// A client over `connections` HTTP/2 connections (round-robin by [`QuiverClients::get`]).
    pub(crate) async fn clients(&self, connections: usize) -> Result<QuiverClients> {
        QuiverClients::connect(self.addr, connections).await
    }

    /// A path inside this server's scratch directory (outside its data directory).
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Bytes of the data directory.
    pub(crate) fn data_bytes(&self) -> Result<u64> {
        crate::bytes_under(&self.dir.join("data"))
    }
}

/// The server's gRPC health status, if it answers within a couple of seconds.
async fn health(addr: SocketAddr) -> Option<ServingStatus> {
    let ch = Connect::new(format!("http://{addr}"))
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Some(Duration::from_secs(2)))
        .channel()
        .await
        .ok()?;
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(r.into_inner().status).ok()
}

/// Native API clients over several HTTP/2 connections.
#[derive(Debug, Clone)]
pub(crate) struct QuiverClients(Vec<(NativeClient, Channel)>);

impl QuiverClients {
    /// Opens `connections` (at least one) connections to `addr`.
    pub(crate) async fn connect(addr: SocketAddr, connections: usize) -> Result<Self> {
        let connect = connect(addr);
        let failed =
            |e: ClientError| BenchError::other(format!("connecting to {addr}"), e.to_string());
        let mut v = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = connect.channel().await.map_err(failed)?;
            v.push((connect.native_on(channel.clone()).map_err(failed)?, channel));
        }
        Ok(Self(v))
    }

    /// The lean reader of `refs` for worker `i`, on the same connection as [`Self::get`].
    pub(crate) fn reader(&self, i: usize, refs: &[String]) -> RawReader {
        RawReader::new(self.0[i % self.0.len()].1.clone(), refs)
    }

    /// The client of worker `i`.
    pub(crate) fn get(&self, i: usize) -> NativeClient {
        self.0[i % self.0.len()].0.clone()
    }
}

/// How the harness reaches a Quiver server: flow-control windows large enough that a W3
/// response (~0.4 MB) never waits for a window update, and a deadline on every request. No
/// retries: a refused request is a measured outcome.
fn connect(addr: SocketAddr) -> Connect {
    Connect::new(format!("http://{addr}"))
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(60)))
        .flow_control_windows(8 << 20, 32 << 20)
}

/// How to run redis-server.
#[derive(Debug, Clone)]
pub(crate) struct RedisSpec {
    /// `appendonly yes` + `appendfsync always` (the write comparison), else persistence off.
    pub(crate) aof_always: bool,
    /// How long loading an RDB may take.
    pub(crate) start_timeout: Duration,
    /// `io-threads` (1 = Redis's default: the main thread does all socket I/O).
    pub(crate) io_threads: usize,
    /// The CPUs it runs on (see [`crate::harness::placement`]), or None for anywhere.
    pub(crate) cpus: Option<String>,
}

/// Fails with how to install redis-server if it is not on PATH.
pub(crate) fn check_redis_installed() -> Result<String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        _ => Err(BenchError::Io {
            what: "redis-server was not found on PATH; install it with \
                   `apt-get install -y redis-server` (Debian/Ubuntu) and run again"
                .into(),
            source: std::io::ErrorKind::NotFound.into(),
        }),
    }
}

impl ServerSpec for RedisSpec {
    const NAME: &'static str = "redis-server";
    const READY: &'static str = "ready";

    fn start_timeout(&self) -> Duration {
        self.start_timeout
    }

    fn cpus(&self) -> Option<&str> {
        self.cpus.as_deref()
    }

    fn command(&self, dir: &TempDir, addr: SocketAddr) -> Result<(Command, PathBuf)> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(addr.port().to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--dbfilename",
                "dump.rdb",
                "--daemonize",
                "no",
                "--save",
                "",
            ])
            .args(["--maxmemory", "0", "--loglevel", "warning"])
            .arg("--io-threads")
            .arg(self.io_threads.to_string());
        if self.io_threads > 1 {
            cmd.args(["--io-threads-do-reads", "yes"]);
        }
        if self.aof_always {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        Ok((cmd, dir.join("redis.log")))
    }

    /// PING answers PONG (not LOADING).
    async fn ready(addr: SocketAddr) -> bool {
        match RespConn::connect(addr).await {
            Ok(mut c) => matches!(c.query(&[b"PING"]).await, Ok(r) if r == b"PONG"),
            Err(_) => false,
        }
    }
}

impl RedisServer {
    /// A new connection.
    pub(crate) async fn conn(&self) -> Result<RespConn> {
        RespConn::connect(self.addr).await
    }

    /// `INFO memory`'s `used_memory`, bytes.
    pub(crate) async fn used_memory(&self) -> Result<u64> {
        let info = self.conn().await?.query(&[b"INFO", b"memory"]).await?;
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| BenchError::other("parsing INFO memory", "no used_memory line"))
    }

    /// Writes an RDB (`SAVE`), stops the server with SIGTERM (with `save ""` it does not save
    /// again), starts it on the same directory and port, and returns the time from spawn to
    /// PONG, i.e. until the RDB is loaded.
    pub(crate) async fn save_and_restart(&mut self) -> Result<Duration> {
        let r = self.conn().await?.query(&[b"SAVE"]).await?;
        if r != b"OK" {
            return Err(BenchError::other("redis SAVE", String::from_utf8_lossy(&r)));
        }
        self.restart(Signal::Term).await
    }

    /// Size of the RDB file, if one was written.
    pub(crate) fn rdb_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("dump.rdb")).map_or(0, |m| m.len())
    }
}
