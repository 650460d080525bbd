//! Server configuration: a TOML file, overridden by environment variables, overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quiver_engine::{DbConfig, FsyncPolicy};
use serde::Deserialize;

/// Everything `quiver serve` can be told. Defaults are safe for a laptop: loopback only,
/// fsync on every acknowledged write, bounded requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC address. Loopback unless told otherwise.
    pub listen: String,
    /// Prometheus metrics address (plain HTTP, `GET /metrics`); empty disables it.
    pub metrics_listen: String,
    /// The embedded data directory.
    pub data_dir: PathBuf,
    /// Registry file for a new data directory, or a new version to apply on start.
    pub registry: Option<PathBuf>,
    /// `always` (ack after fsync), `never`, or an interval such as `10ms`.
    pub fsync: String,
    /// Shards per view (power of two).
    pub shards: usize,
    /// Most entity rows in one read or write request.
    pub max_entities_per_request: usize,
    /// Most feature references in one read.
    pub max_features_per_request: usize,
    /// Most values (entity rows × features) one read may answer.
    pub max_values_per_request: usize,
    /// Largest response a read may build, bytes, as estimated from the schema before reading
    /// and held while the values are gathered.
    pub max_response_bytes: usize,
    /// Largest single stored value (a string, bytes or a list) a write may carry, bytes.
    pub max_value_bytes: usize,
    /// How far ahead of the server clock an event or created time may be, seconds: a time
    /// further out (nanoseconds sent as microseconds, say) would win last-write-wins forever.
    pub max_event_time_skew_secs: u64,
    /// Largest decoded Feast request (reads only), bytes.
    pub max_read_message_bytes: usize,
    /// Largest decoded native request (writes and upload chunks share it), bytes.
    pub max_write_message_bytes: usize,
    /// Largest snapshot upload, bytes (after decompression).
    pub max_upload_bytes: u64,
    /// Requests handled at once; beyond it requests are shed with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// Default deadline of reads, unary writes and the registry and stats calls,
    /// milliseconds (a shorter client deadline wins).
    pub request_timeout_ms: u64,
    /// Default deadline of the long calls (streamed writes, snapshot loads and uploads,
    /// checkpoints), milliseconds: their work grows with the data, not with one request.
    pub bulk_timeout_ms: u64,
    /// Bearer token required on data RPCs (health and reflection stay open). Also read from
    /// `QUIVER_AUTH_TOKEN`.
    pub auth_token: Option<String>,
    /// PEM certificate chain for TLS; with `tls_key`, the server speaks only TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Checkpoint when this many bytes were logged since the last one (0 = never).
    pub checkpoint_wal_bytes: u64,
    /// Checkpoint at least this often, seconds, when there were writes (0 = never).
    pub checkpoint_interval_secs: u64,
    /// On shutdown, how long to wait for clients to finish and acknowledge before closing
    /// their connections anyway, ms.
    pub shutdown_grace_ms: u64,
    /// WAL records of at least this many bytes are zstd-compressed (0 = never): large bulk
    /// writes take less disk, while ordinary ones skip zstd's CPU cost (docs/operations.md).
    pub wal_compress_min_bytes: usize,
    /// Threads serving requests.
    pub worker_threads: usize,
    /// How they share the work: "per-core" (each owns the connections it is given) or
    /// "shared" (Tokio's work-stealing scheduler moves tasks between them).
    pub threading: String,
    /// Recover past mid-log WAL corruption by dropping the damaged part (loses data).
    pub salvage: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6566".into(),
            metrics_listen: "127.0.0.1:9466".into(),
            data_dir: PathBuf::from("quiver-data"),
            registry: None,
            fsync: "always".into(),
            shards: 64,
            max_entities_per_request: 10_000,
            max_features_per_request: 1_000,
            max_values_per_request: 1_000_000,
            max_response_bytes: 32 << 20,
            max_value_bytes: 1 << 20,
            max_event_time_skew_secs: 86_400,
            max_read_message_bytes: 4 << 20,
            max_write_message_bytes: 64 << 20,
            max_upload_bytes: 64 << 30,
            max_concurrent_requests: 512,
            request_timeout_ms: 5_000,
            bulk_timeout_ms: 600_000,
            auth_token: None,
            tls_cert: None,
            tls_key: None,
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval_secs: 3_600,
            shutdown_grace_ms: 30_000,
            wal_compress_min_bytes: 64 << 10,
            worker_threads: 2,
            threading: "per-core".into(),
            salvage: false,
        }
    }
}

/// How the serving threads share the work (`threading` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// Each thread runs its own single-threaded runtime and serves the connections the
    /// acceptor gives it, start to finish: a request never changes thread.
    PerCore,
    /// One work-stealing runtime: any thread may run any connection's next step.
    Shared,
}

/// A configuration problem, named by field.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Applies `QUIVER_*` environment variables.
    pub fn apply_env(&mut self) {
        // Set but empty is kept (and refused by `validate`): an operator who exports an empty
        // token meant to require one, and must not get an open server.
        if let Ok(t) = std::env::var("QUIVER_AUTH_TOKEN") {
            self.auth_token = Some(t);
        }
        if let Ok(v) = std::env::var("QUIVER_LISTEN") {
            self.listen = v;
        }
        if let Ok(v) = std::env::var("QUIVER_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
    }

    /// The fsync policy named by `fsync`.
    pub fn fsync_policy(&self) -> Result<FsyncPolicy, ConfigError> {
        match self.fsync.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other
                    .strip_suffix("ms")
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "fsync = {other:?}: expected \"always\", \"never\" or an interval \
                             like \"10ms\""
                        ))
                    })?;
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }

    /// The threading model named by `threading`.
    pub fn threading(&self) -> Result<Threading, ConfigError> {
        match self.threading.as_str() {
            "per-core" => Ok(Threading::PerCore),
            "shared" => Ok(Threading::Shared),
            other => Err(ConfigError(format!(
                "threading = {other:?}: expected \"per-core\" or \"shared\""
            ))),
        }
    }

    /// The gRPC socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| ConfigError(format!("listen = {:?}: {e}", self.listen)))
    }

    /// The metrics socket address, if enabled.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        self.metrics_listen
            .parse()
            .map(Some)
            .map_err(|e| ConfigError(format!("metrics_listen = {:?}: {e}", self.metrics_listen)))
    }

    /// Checks every field; returns the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.metrics_addr()?;
        self.fsync_policy()?;
        self.threading()?;
        let positive = [
            ("shards", self.shards),
            ("max_entities_per_request", self.max_entities_per_request),
            ("max_features_per_request", self.max_features_per_request),
            ("max_values_per_request", self.max_values_per_request),
            ("max_response_bytes", self.max_response_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_read_message_bytes", self.max_read_message_bytes),
            ("max_write_message_bytes", self.max_write_message_bytes),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("worker_threads", self.worker_threads),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError(format!("{name} must be positive")));
            }
        }
        if !self.shards.is_power_of_two() {
            return Err(ConfigError(format!(
                "shards = {} must be a power of two",
                self.shards
            )));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError("request_timeout_ms must be positive".into()));
        }
        if self.bulk_timeout_ms == 0 {
            return Err(ConfigError("bulk_timeout_ms must be positive".into()));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(
                    "tls_cert and tls_key must be given together".into(),
                ))
            }
            _ => {}
        }
        if let Some(t) = &self.auth_token {
            if t.trim().len() < 16 {
                return Err(ConfigError(
                    "auth_token must be at least 16 characters besides spaces".into(),
                ));
            }
            if t.trim() != t || t.chars().any(char::is_control) {
                return Err(ConfigError(
                    "auth_token must not start or end with spaces or hold control characters"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The TLS identity, if configured.
    pub fn tls(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| ConfigError(format!("{what} = {}: {e}", p.display())))
        };
        let identity =
            tonic::transport::Identity::from_pem(read(cert, "tls_cert")?, read(key, "tls_key")?);
        Ok(Some(
            tonic::transport::ServerTlsConfig::new().identity(identity),
        ))
    }

    /// The engine configuration this server config implies.
    pub fn db_config(&self) -> Result<DbConfig, ConfigError> {
        let mut c = DbConfig::new(&self.data_dir);
        c.store.shards = self.shards;
        c.wal.fsync = self.fsync_policy()?;
        c.wal.compress_threshold = match self.wal_compress_min_bytes {
            0 => usize::MAX,
            n => n,
        };
        c.salvage = self.salvage;
        c.checkpoint_wal_bytes = self.checkpoint_wal_bytes;
        c.checkpoint_interval = (self.checkpoint_interval_secs > 0)
            .then(|| Duration::from_secs(self.checkpoint_interval_secs));
        Ok(c)
    }
}
