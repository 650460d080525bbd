//! The servers a comparison runs: the real `quiver` binary and `redis-server`, each a child
//! process on a free loopback port with its own scratch directory, killed and removed when
//! dropped (at the end of a run, on an error, on Ctrl-C).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quiver_server::proto::quiver::v1::feature_store_client::FeatureStoreClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::clients::resp::RespConn;
use crate::{BenchError, Result, ScratchDir};

/// How long a process may take to exit after a signal.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Polling interval while waiting for readiness.
const POLL: Duration = Duration::from_millis(5);

/// An I/O error with context.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// A loopback address with a port that was free when probed.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding an ephemeral port"))?;
    l.local_addr().map_err(io("reading an ephemeral port"))
}

/// A child process, SIGKILLed and reaped on drop unless it already exited.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = file.try_clone().map_err(io("cloning a log handle"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {name} ({cmd:?})")))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id (0 once reaped).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails with the end of the log if the process has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        let exited = self
            .child
            .as_mut()
            .map_or(Ok(None), Child::try_wait)
            .map_err(io(format!("waiting for {}", self.name)))?;
        match exited {
            None if self.child.is_some() => Ok(()),
            status => Err(BenchError::Io {
                what: format!(
                    "{} exited ({status:?}); log tail:\n{}",
                    self.name,
                    self.tail()
                ),
                source: std::io::Error::other("server process exited"),
            }),
        }
    }

    /// The last lines of the log.
    pub(crate) fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Resident set size, bytes.
    pub(crate) fn rss_bytes(&self) -> Result<u64> {
        crate::mem::rss_of(self.pid()).ok_or_else(|| BenchError::Io {
            what: format!("reading the memory of process {}", self.pid()),
            source: std::io::Error::other("no /proc/<pid>/statm"),
        })
    }

    /// Sends `signal` (e.g. "TERM") with kill(1) and waits for the exit.
    pub(crate) fn stop(&mut self, signal: &str) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if child.try_wait().ok().flatten().is_none() {
            let sent = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .map_err(io("running kill"))?;
            if !sent.success() {
                let _ = child.kill();
            }
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if child
                .try_wait()
                .map_err(io(format!("waiting for {}", self.name)))?
                .is_some()
            {
                self.child = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(BenchError::Io {
                    what: format!("{} did not exit within {EXIT_TIMEOUT:?}", self.name),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Finds the `quiver` binary: `explicit`, else `target/<profile>/quiver` of the tree this
/// harness was built in, built first with `cargo build [--release] --bin quiver` (a no-op when
/// it is fresh) when cargo is at hand. The profile is `release` when `release` is set, else
/// the harness's own (a smoke run in CI reuses the debug build the tests made).
pub(crate) fn quiver_binary(explicit: Option<&Path>, release: bool) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().map_err(io("locating the harness executable"))?;
    // target/<profile>/quiver-bench → target/<profile>/quiver
    let profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let release = release || profile_dir.file_name().is_some_and(|n| n == "release");
    let target = profile_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("quiver");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if let Some(ws) = workspace.filter(|w| w.join("Cargo.toml").exists()) {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "-q", "-p", "quiver-server", "--bin", "quiver"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(ws);
        if release {
            cmd.arg("--release");
        }
        eprintln!("building the quiver binary: {cmd:?}");
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Err(BenchError::Io {
                    what: format!("{cmd:?}"),
                    source: std::io::Error::other(format!("exited with {s}")),
                })
            }
            // No cargo here: use whatever binary sits in the target directory.
            Err(_) => {}
        }
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(BenchError::Io {
            what: format!(
                "the quiver binary is not at {}; pass --quiver-bin",
                bin.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
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
}

/// A running `quiver serve` on a free port with its own data directory.
#[derive(Debug)]
pub(crate) struct QuiverServer {
    // Field order: the process is killed before its directory is removed.
    proc: Proc,
    /// The gRPC address.
    pub(crate) addr: SocketAddr,
    spec: QuiverSpec,
    dir: ScratchDir,
}

impl QuiverServer {
    /// Starts a server on a fresh data directory under `parent` and waits until SERVING.
    pub(crate) async fn start(
        spec: QuiverSpec,
        parent: Option<&Path>,
        label: &str,
    ) -> Result<Self> {
        let dir = ScratchDir::new(parent, label)?;
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

    fn spawn(spec: &QuiverSpec, dir: &ScratchDir, addr: SocketAddr) -> Result<Proc> {
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
        Proc::spawn("quiver serve", cmd, &dir.join("quiver.log"))
    }

    /// Polls gRPC health until SERVING; returns how long it took from the call.
    async fn wait_serving(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + self.spec.start_timeout;
        loop {
            self.proc.check_running()?;
            if Instant::now() > deadline {
                return Err(BenchError::Io {
                    what: format!(
                        "quiver not SERVING after {:?}; log tail:\n{}",
                        self.spec.start_timeout,
                        self.proc.tail()
                    ),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            if self.health().await == Some(ServingStatus::Serving) {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn health(&self) -> Option<ServingStatus> {
        let ch = Endpoint::from_shared(format!("http://{}", self.addr))
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .connect()
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

    /// Stops the server with `signal` ("TERM": graceful, WAL flushed; "KILL": a crash), starts
    /// it again on the same data directory and port, and returns the time from spawn to
    /// SERVING.
    pub(crate) async fn restart(&mut self, signal: &str) -> Result<Duration> {
        self.proc.stop(signal)?;
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

/// Native API clients over several HTTP/2 connections.
#[derive(Debug, Clone)]
pub(crate) struct QuiverClients(Vec<FeatureStoreClient<Channel>>);

impl QuiverClients {
    /// Opens `connections` (at least one) connections to `addr`.
    pub(crate) async fn connect(addr: SocketAddr, connections: usize) -> Result<Self> {
        let mut v = Vec::new();
        for _ in 0..connections.max(1) {
            v.push(
                FeatureStoreClient::new(channel(addr).await?)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            );
        }
        Ok(Self(v))
    }

    /// The client of worker `i`.
    pub(crate) fn get(&self, i: usize) -> FeatureStoreClient<Channel> {
        self.0[i % self.0.len()].clone()
    }
}

/// One HTTP/2 connection with `TCP_NODELAY` and flow-control windows large enough that a
/// W3 response (~0.4 MB) never waits for a window update.
pub(crate) async fn channel(addr: SocketAddr) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::InvalidArgument(e.to_string()))?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| BenchError::Io {
            what: format!("connecting to {addr}"),
            source: std::io::Error::other(e.to_string()),
        })
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
    dir: ScratchDir,
}

/// Fails with how to install redis-server if it is not on PATH.
pub(crate) fn check_redis_installed() -> Result<String> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        _ => Err(BenchError::Io {
            what: "redis-server was not found on PATH; install it with \
                   `apt-get install -y redis-server` (Debian/Ubuntu) and run again"
                .into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
    }
}

impl RedisServer {
    /// Starts redis-server on loopback with a fresh directory under `parent`.
    pub(crate) async fn start(spec: RedisSpec, parent: Option<&Path>, label: &str) -> Result<Self> {
        let dir = ScratchDir::new(parent, label)?;
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

    fn spawn(spec: &RedisSpec, dir: &ScratchDir, addr: SocketAddr) -> Result<Proc> {
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
        Proc::spawn("redis-server", cmd, &dir.join("redis.log"))
    }

    /// Polls PING until it answers PONG (not LOADING); returns the time from the call.
    async fn wait_ready(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + self.spec.start_timeout;
        loop {
            self.proc.check_running()?;
            if Instant::now() > deadline {
                return Err(BenchError::Io {
                    what: format!(
                        "redis-server not ready after {:?}; log tail:\n{}",
                        self.spec.start_timeout,
                        self.proc.tail()
                    ),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            if let Ok(mut c) = RespConn::connect(self.addr).await {
                if matches!(c.query(&[b"PING"]).await, Ok(r) if r == b"PONG") {
                    return Ok(start.elapsed());
                }
            }
            tokio::time::sleep(POLL).await;
        }
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
            .ok_or_else(|| BenchError::Io {
                what: "parsing INFO memory".into(),
                source: std::io::Error::other("no used_memory line"),
            })
    }

    /// Writes an RDB (`SAVE`), stops the server with SIGTERM (with `save ""` it does not save
    /// again), starts it on the same directory and port, and returns the time from spawn to
    /// PONG, i.e. until the RDB is loaded.
    pub(crate) async fn save_and_restart(&mut self) -> Result<Duration> {
        let r = self.conn().await?.query(&[b"SAVE"]).await?;
        if r != b"OK" {
            return Err(BenchError::Io {
                what: "redis SAVE".into(),
                source: std::io::Error::other(String::from_utf8_lossy(&r).into_owned()),
            });
        }
        self.proc.stop("TERM")?;
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
