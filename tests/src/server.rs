//! Running the real `quiver serve` for end-to-end tests: ephemeral ports, a temporary
//! directory, readiness through gRPC health, bounded waits, and a guard that kills the process
//! when a test ends or fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quiver_server::client::{Connect, FeastClient, NativeClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use quiver_testkit::{free_port, Proc, Signal};

pub use quiver_testkit::TempDir;

use crate::quiver_command;

/// How long a server may take from spawn to health SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM or SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at finding free ports (another process may take one between probe and bind).
const PORT_ATTEMPTS: usize = 5;

/// Wall-clock time in microseconds since the Unix epoch (the server's unit).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    /// The data directory; its `.toml` and `.log` siblings hold the config and the log.
    pub data_dir: PathBuf,
    /// `--registry`.
    pub registry: Option<PathBuf>,
    /// Extra lines of the TOML config file (`--config`), e.g. `max_concurrent_requests = 1`.
    pub config: String,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// The CA certificate (PEM file) clients trust, when the server speaks TLS.
    pub tls_ca: Option<PathBuf>,
}

impl ServerSpec {
    /// A server on `data_dir`, created from `registry` if new.
    pub fn new(data_dir: impl Into<PathBuf>, registry: Option<&Path>) -> Self {
        Self {
            data_dir: data_dir.into(),
            registry: registry.map(Path::to_path_buf),
            ..Self::default()
        }
    }

    /// Adds config file lines.
    pub fn config(mut self, lines: &str) -> Self {
        self.config.push_str(lines);
        self.config.push('\n');
        self
    }

    /// Serves TLS only, with `cert`/`key`; the harness's clients trust `ca`.
    pub fn tls(self, cert: &Path, key: &Path, ca: &Path) -> Self {
        let mut spec = self.config(&format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        ));
        spec.tls_ca = Some(ca.to_path_buf());
        spec
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// Writes the config file next to the data directory; returns its path.
    fn write_config(&self) -> PathBuf {
        let path = self.data_dir.with_extension("toml");
        std::fs::write(&path, &self.config).expect("write the config file");
        path
    }
}

/// A running `quiver serve` process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    proc: Proc,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The metrics address.
    pub metrics: SocketAddr,
    /// PEM of the CA to trust, when the server speaks TLS.
    tls_ca: Option<Vec<u8>>,
    /// Whether health answered NOT_SERVING while `start` waited (recovery was observed).
    pub saw_not_serving: bool,
}

/// `quiver serve` for `spec` on the given ports, logging to the spec's log file.
fn spawn_serve(spec: &ServerSpec, config: &Path, grpc: SocketAddr, metrics: SocketAddr) -> Proc {
    let mut cmd = quiver_command();
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(grpc.to_string())
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .arg("--data-dir")
        .arg(&spec.data_dir);
    if let Some(r) = &spec.registry {
        cmd.arg("--registry").arg(r);
    }
    cmd.args(&spec.args)
        .env_remove("QUIVER_LISTEN")
        .env_remove("QUIVER_DATA_DIR")
        .env("QUIVER_LOG", "info")
        .env("NO_COLOR", "1");
    Proc::spawn("quiver serve", cmd, &spec.log_path()).expect("spawn quiver serve")
}

/// A free loopback port (free when probed; the caller retries if it is taken meanwhile).
fn port() -> SocketAddr {
    free_port().expect("bind an ephemeral port")
}

impl Server {
    /// Starts the real binary and waits until health says SERVING (recovery finished).
    pub async fn start(spec: &ServerSpec) -> Server {
        let config_path = spec.write_config();
        for attempt in 1..=PORT_ATTEMPTS {
            let (grpc, metrics) = (port(), port());
            let mut server = Server {
                proc: spawn_serve(spec, &config_path, grpc, metrics),
                grpc,
                metrics,
                tls_ca: spec
                    .tls_ca
                    .as_ref()
                    .map(|ca| std::fs::read(ca).expect("read the test CA")),
                saw_not_serving: false,
            };
            match server.wait_serving().await {
                Ok(()) => return server,
                Err(exited) => {
                    if attempt < PORT_ATTEMPTS && server.proc.own_log().contains("cannot listen") {
                        continue;
                    }
                    panic!(
                        "quiver serve did not become ready ({exited}); log:\n{}",
                        server.log()
                    );
                }
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Starts the real binary expecting it to refuse to start: waits for the exit (bounded)
    /// and returns its status and what it logged. Panics if it becomes ready instead.
    pub async fn start_refused(spec: &ServerSpec) -> (ExitStatus, String) {
        let config_path = spec.write_config();
        let mut proc = spawn_serve(spec, &config_path, port(), port());
        let status = tokio::task::block_in_place(|| proc.wait_timeout(START_TIMEOUT))
            .unwrap_or_else(|e| panic!("quiver serve kept running: {e}; log:\n{}", proc.log()));
        (status, proc.own_log())
    }

    /// Polls health until SERVING; Err if the process exited or the wait timed out.
    async fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!("exited early with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("not SERVING after {START_TIMEOUT:?}"));
            }
            match self.health("").await {
                Ok(Some(ServingStatus::Serving)) => return Ok(()),
                Ok(Some(ServingStatus::NotServing)) => self.saw_not_serving = true,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The health status of `service` ("" = the whole server), if the server answers.
    pub async fn health(&self, service: &str) -> Result<Option<ServingStatus>, tonic::Status> {
        let channel = self
            .connect(None)
            .connect_timeout(Duration::from_secs(1))
            .request_timeout(Some(Duration::from_secs(2)))
            .channel()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let r = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(ServingStatus::try_from(r.into_inner().status).ok())
    }

    /// `http://host:port` (or `https://` with TLS) of the gRPC listener.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.grpc)
    }

    /// How the tests reach this server: its URL, the test CA when it speaks TLS, connect
    /// within 5 s, a 20 s deadline per request, and `token` as the bearer token.
    pub fn connect(&self, token: Option<&str>) -> Connect {
        let connect = Connect::new(self.url())
            .token(token)
            .connect_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(20)));
        match &self.tls_ca {
            Some(ca) => connect.ca_pem(ca.clone()).domain_name("localhost"),
            None => connect,
        }
    }

    /// A new HTTP/2 connection to the server.
    pub async fn channel(&self) -> Channel {
        self.connect(None)
            .channel()
            .await
            .expect("connect to the server")
    }

    /// A new HTTP/2 connection on which one health check has round-tripped, so the client has
    /// the server's SETTINGS (its stream limit) before it opens streams: a burst on a fresh
    /// connection can otherwise open more streams than the limit and see them refused
    /// (REFUSED_STREAM, reported as UNAVAILABLE) instead of shed.
    pub async fn settled_channel(&self) -> Channel {
        let channel = self.channel().await;
        HealthClient::new(channel.clone())
            .check(HealthCheckRequest::default())
            .await
            .expect("health check on a new connection");
        channel
    }

    /// A native API client without a token on a [`Server::settled_channel`], for bursts.
    pub async fn settled_native(&self) -> Native {
        let channel = self.settled_channel().await;
        self.connect(None)
            .native_on(channel)
            .expect("a client without a token")
    }

    /// A native API client sending `token` as a bearer token, if given.
    pub async fn native(&self, token: Option<&str>) -> Native {
        self.connect(token)
            .native()
            .await
            .expect("connect to the server")
    }

    /// A Feast-compatible client sending `token` as a bearer token, if given.
    pub async fn feast(&self, token: Option<&str>) -> Feast {
        self.connect(token)
            .feast()
            .await
            .expect("connect to the server")
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let fetch = async {
            let mut sock = tokio::net::TcpStream::connect(self.metrics).await?;
            sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: quiver\r\n\r\n")
                .await?;
            let mut out = Vec::new();
            sock.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
        };
        let text = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("metrics endpoint answers in time")
            .expect("metrics endpoint answers");
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        text
    }

    /// The value of an unlabelled metric (or of a full `name{labels}` series).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("metric {series} missing from:\n{text}"))
    }

    /// The server's log so far (stdout and stderr, of this run and the earlier ones on the
    /// same data directory).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.proc.try_wait().ok().flatten()
    }

    /// Panics (with the log) unless the process is still running.
    pub fn assert_running(&mut self) {
        if let Err(e) = self.proc.check_running() {
            panic!("{e}; whole log:\n{}", self.log());
        }
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        self.proc.signal(Signal::Term).expect("send SIGTERM");
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(self) -> ExitStatus {
        self.sigterm();
        self.wait().await
    }

    /// Waits for the process to exit by itself (e.g. after [`Self::sigterm`]).
    pub async fn wait(mut self) -> ExitStatus {
        let exited = tokio::task::block_in_place(|| self.proc.wait_timeout(EXIT_TIMEOUT));
        exited.unwrap_or_else(|e| panic!("{e}; whole log:\n{}", self.log()))
    }

    /// Kills the process with SIGKILL (a crash) and waits for the exit.
    pub async fn kill(mut self) -> ExitStatus {
        let exited = tokio::task::block_in_place(|| self.proc.kill(EXIT_TIMEOUT));
        exited.unwrap_or_else(|e| panic!("{e}; whole log:\n{}", self.log()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The process itself is killed when `proc` is dropped, right after this.
        if std::thread::panicking() {
            eprintln!("--- log of the server at {} ---\n{}", self.grpc, self.log());
        }
    }
}

/// The native API client the tests use.
pub type Native = NativeClient;
/// The Feast-compatible client the tests use.
pub type Feast = FeastClient;
