//! The servers a comparison runs: the real `quiver` binary and `redis-server`, each a child
//! process on a free loopback port with its own scratch directory, killed and removed when
//! dropped (at the end of a run, on an error, on Ctrl-C).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quiver_server::client::{Connect, NativeClient};
use quiver_testkit::{find_or_build, free_port, Proc, Profile, Signal, TempDir};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::clients::resp::RespConn;
use crate::error::io;
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

/// Starts `cmd` as `name`, logging to `log`.
fn spawn(name: &str, cmd: Command, log: &Path) -> Result<Proc> {
    Proc::spawn(name, cmd, log).map_err(io(format!("starting {name}")))
}

/// Stops `proc` with `signal` and waits (bounded) for it to exit.
fn stop(proc: &mut Proc, signal: Signal) -> Result<()> {
    proc.stop(signal, EXIT_TIMEOUT)
        .map(drop)
        .map_err(io(format!("stopping {}", proc.name())))
}

/// Polls `ready` until it holds; returns how long that took. Fails, quoting the end of the
/// log, when `proc` exits first or `timeout` passes.
async fn wait_ready<F, Fut>(
    proc: &mut Proc,
    timeout: Duration,
    state: &str,
    mut ready: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        proc.check_running()
            .map_err(io(format!("waiting for {} to be {state}", proc.name())))?;
        if start.elapsed() > timeout {
            return Err(BenchError::Io {
                what: format!(
                    "{} not {state} after {timeout:?}; log tail:\n{}",
                    proc.name(),
                    proc.log_tail(20)
                ),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            });
        }
        if ready().await {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A free loopback address for a server.
fn free_addr() -> Result<SocketAddr> {
    free_port().map_err(io("probing for a free port"))
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
}

/// A running `quiver serve` on a free port with its own data directory.
#[derive(Debug)]
pub(crate) struct QuiverServer {
    // Field order: the process is killed before its directory is removed.
    proc: Proc,
    /// The gRPC address.
    pub(crate) addr: SocketAddr,
    spec: QuiverSpec,
    dir: TempDir,
}

impl QuiverServer {
    /// Starts a server on a fresh data directory under `parent` and waits until SERVING.
    pub(crate) async fn start(
        spec: QuiverSpec,
        parent: Option<&Path>,
        label: &str,
    ) -> Result<Self> {
        let dir = scratch_dir(parent, label)?;
        let addr = free_addr()?;
        let proc = Self::spawn(&spec, &dir, addr)?;
        let mut s = Self {
            proc,
            addr,
            spec,
            dir,
        };
        s.wait_serving().await?;
        Ok(s)
    }

    fn spawn(spec: &QuiverSpec, dir: &TempDir, addr: SocketAddr) -> Result<Proc> {
        // Automatic checkpoints are off, as Redis runs with `save ""`: nothing but the measured
        // work runs in the background. The harness checkpoints explicitly where it matters.
        let config = dir.join("quiver.toml");
        std::fs::write(
            &config,
            format!(
                "checkpoint_wal_bytes = 0\ncheckpoint_interval_secs = 0\nworker_threads = {}\n\
                 fsync = \"{}\"\n{}\n",
                spec.worker_threads, spec.fsync, spec.extra_config
            ),
        )
        .map_err(io(format!("writing {}", config.display())))?;
        let mut cmd = Command::new(&spec.bin);
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
            .arg(&spec.registry)
            .env_remove("QUIVER_AUTH_TOKEN")
            .env_remove("QUIVER_LISTEN")
            .env_remove("QUIVER_DATA_DIR")
            .env("QUIVER_LOG", "warn");
        spawn("quiver serve", cmd, &dir.join("quiver.log"))
    }

    /// Polls gRPC health until SERVING; returns how long it took from the call.
    async fn wait_serving(&mut self) -> Result<Duration> {
        let addr = self.addr;
        wait_ready(
            &mut self.proc,
            self.spec.start_timeout,
            "SERVING",
            || async move { health(addr).await == Some(ServingStatus::Serving) },
        )
        .await
    }

    /// Stops the server with `signal` (TERM: graceful, WAL flushed; KILL: a crash), starts it
    /// again on the same data directory and port, and returns the time from spawn to SERVING.
    pub(crate) async fn restart(&mut self, signal: Signal) -> Result<Duration> {
        stop(&mut self.proc, signal)?;
        let start = Instant::now();
        self.proc = Self::spawn(&self.spec, &self.dir, self.addr)?;
        self.wait_serving().await?;
        Ok(start.elapsed())
    }

    /// A client over `connections` HTTP/2 connections (round-robin by [`QuiverClients::get`]).
    pub(crate) async fn clients(&self, connections: usize) -> Result<QuiverClients> {
        QuiverClients::connect(self.addr, connections).await
    }

    /// The server process.
    pub(crate) fn proc(&self) -> &Proc {
        &self.proc
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
pub(crate) struct QuiverClients(Vec<NativeClient>);

impl QuiverClients {
    /// Opens `connections` (at least one) connections to `addr`.
    pub(crate) async fn connect(addr: SocketAddr, connections: usize) -> Result<Self> {
        let connect = connect(addr);
        let mut v = Vec::new();
        for _ in 0..connections.max(1) {
            v.push(
                connect.native().await.map_err(|e| {
                    BenchError::other(format!("connecting to {addr}"), e.to_string())
                })?,
            );
        }
        Ok(Self(v))
    }

    /// The client of worker `i`.
    pub(crate) fn get(&self, i: usize) -> NativeClient {
        self.0[i % self.0.len()].clone()
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
}

/// A running redis-server on a free port with its own directory.
#[derive(Debug)]
pub(crate) struct RedisServer {
    proc: Proc,
    /// Its address.
    pub(crate) addr: SocketAddr,
    spec: RedisSpec,
    dir: TempDir,
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

impl RedisServer {
    /// Starts redis-server on loopback with a fresh directory under `parent`.
    pub(crate) async fn start(spec: RedisSpec, parent: Option<&Path>, label: &str) -> Result<Self> {
        let dir = scratch_dir(parent, label)?;
        let addr = free_addr()?;
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

    fn spawn(spec: &RedisSpec, dir: &TempDir, addr: SocketAddr) -> Result<Proc> {
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
            .arg(spec.io_threads.to_string());
        if spec.io_threads > 1 {
            cmd.args(["--io-threads-do-reads", "yes"]);
        }
        if spec.aof_always {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        spawn("redis-server", cmd, &dir.join("redis.log"))
    }

    /// Polls PING until it answers PONG (not LOADING); returns the time from the call.
    async fn wait_ready(&mut self) -> Result<Duration> {
        let addr = self.addr;
        wait_ready(
            &mut self.proc,
            self.spec.start_timeout,
            "ready",
            || async move {
                match RespConn::connect(addr).await {
                    Ok(mut c) => matches!(c.query(&[b"PING"]).await, Ok(r) if r == b"PONG"),
                    Err(_) => false,
                }
            },
        )
        .await
    }

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
        stop(&mut self.proc, Signal::Term)?;
        let start = Instant::now();
        self.proc = Self::spawn(&self.spec, &self.dir, self.addr)?;
        self.wait_ready().await?;
        Ok(start.elapsed())
    }

    /// The server process.
    pub(crate) fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Size of the RDB file, if one was written.
    pub(crate) fn rdb_bytes(&self) -> u64 {
        std::fs::metadata(self.dir.join("dump.rdb")).map_or(0, |m| m.len())
    }
}
