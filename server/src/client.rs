//! Connecting to a Quiver server: the address, the bearer token, TLS, timeouts and retries in
//! one place, for the `quiver` command line, the end-to-end tests and the benchmarks alike.
//!
//! ```no_run
//! use quiver_server::client::{Connect, Retry};
//! use quiver_server::proto::quiver::v1::GetStatsRequest;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Connect::new("http://127.0.0.1:6566")
//!     .token(Some("s3cret-token-123456"))
//!     .native()
//!     .await?;
//! // A read: safe to send again when the server is recovering or shedding load.
//! let stats = Retry::default()
//!     .run(|| {
//!         let mut c = client.clone();
//!         async move { c.get_stats(GetStatsRequest::default()).await }
//!     })
//!     .await?;
//! println!("registry version {}", stats.into_inner().registry_version);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use arrow_array::{Array, RecordBatch};
use quiver_engine::Registry;
use quiver_offline::{EpochUnit, History, MaterializeOptions};

use crate::convert::writes_from_history;
use crate::proto::feast::serving::serving_service_client::ServingServiceClient;
use crate::proto::quiver::v1 as pb;
use crate::proto::quiver::v1::feature_store_client::FeatureStoreClient;

/// A native API (`quiver.v1.FeatureStore`) client that sends the bearer token, if any.
pub type NativeClient = FeatureStoreClient<InterceptedService<Channel, BearerToken>>;

/// A Feast-compatible (`feast.serving.ServingService`) client that sends the bearer token.
pub type FeastClient = ServingServiceClient<InterceptedService<Channel, BearerToken>>;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is not a URI tonic accepts (`http://host:port` or `https://host:port`).
    #[error("server address {address:?}: {reason}")]
    Address {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bearer token cannot be sent as an HTTP header value.
    #[error("token: only visible ASCII characters can be sent in an authorization header")]
    Token,
    /// The CA certificate file could not be read.
    #[error("CA certificate {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS settings the transport refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server could not be reached (or the TLS handshake failed).
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// The transport error and its causes.
        reason: String,
    },
}

/// How to reach a server. Defaults: connect within 10 s, no deadline on requests (uploads and
/// checkpoints of a large store take as long as they take; set one for reads), HTTP/2 flow
/// control windows as tonic sets them.
#[derive(Debug, Clone)]
pub struct Connect {
    address: String,
    token: Option<String>,
    ca_pem: Option<Vec<u8>>,
    domain_name: Option<String>,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    windows: Option<(u32, u32)>,
}

impl Connect {
    /// A server at `address`: `http://host:port`, or `https://host:port` for TLS.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: None,
            ca_pem: None,
            domain_name: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            windows: None,
        }
    }

    /// The address given to [`Connect::new`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `authorization: Bearer <token>` on every call (None: no header).
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    /// Trusts this PEM CA certificate for an `https://` server.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Trusts the PEM CA certificate in `path` for an `https://` server.
    pub fn ca_file(self, path: &Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(self.ca_pem(pem))
    }

    /// Checks the server's certificate against this name instead of the address's host.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// How long establishing the connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A deadline for every request on the connection (None: no deadline).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// HTTP/2 flow-control windows, bytes: per request stream and per connection (large
    /// responses then never wait for a window update).
    pub fn flow_control_windows(mut self, stream: u32, connection: u32) -> Self {
        self.windows = Some((stream, connection));
        self
    }

    /// The transport endpoint these settings describe, for callers that build their own
    /// channels (then wrap them with [`Connect::native_on`]).
    pub fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let address_error = |reason: String| ClientError::Address {
            address: self.address.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(self.address.clone())
            .map_err(|e| address_error(e.to_string()))?
            .connect_timeout(self.connect_timeout);
        if let Some(t) = self.request_timeout {
            endpoint = endpoint.timeout(t);
        }
        if let Some((stream, connection)) = self.windows {
            endpoint = endpoint
                .initial_stream_window_size(Some(stream))
                .initial_connection_window_size(Some(connection));
        }
        if let Some(pem) = &self.ca_pem {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(name) = &self.domain_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ClientError::Tls(error_chain(&e)))?;
        }
        Ok(endpoint)
    }

    /// Opens one HTTP/2 connection (every call opens a new one).
    pub async fn channel(&self) -> Result<Channel, ClientError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|e| ClientError::Connect {
                address: self.address.clone(),
                reason: error_chain(&e),
            })
    }

    /// The interceptor that adds this connection's bearer token.
    pub fn bearer(&self) -> Result<BearerToken, ClientError> {
        BearerToken::new(self.token.as_deref())
    }

    /// A native API client on a new connection.
    pub async fn native(&self) -> Result<NativeClient, ClientError> {
        let bearer = self.bearer()?;
        Ok(native_client(self.channel().await?, bearer))
    }

    /// A native API client on a channel the caller opened, with this token.
    pub fn native_on(&self, channel: Channel) -> Result<NativeClient, ClientError> {
        Ok(native_client(channel, self.bearer()?))
    }

    /// A Feast-compatible client on a new connection.
    pub async fn feast(&self) -> Result<FeastClient, ClientError> {
        self.feast_on(self.channel().await?)
    }

    /// A Feast-compatible client on a channel the caller opened, with this token.
    pub fn feast_on(&self, channel: Channel) -> Result<FeastClient, ClientError> {
        // The server bounds what it answers (max_response_bytes); the client takes it whole.
        Ok(
            ServingServiceClient::with_interceptor(channel, self.bearer()?)
                .max_decoding_message_size(usize::MAX),
        )
    }
}

fn native_client(channel: Channel, bearer: BearerToken) -> NativeClient {
    // The server bounds what it answers (max_response_bytes); the client takes it whole.
    FeatureStoreClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// An error and its causes, `outer: inner: ...` (tonic's transport errors say little at the
/// top: "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The interceptor for `token` (None: send no header); refuses a token that cannot be a
    /// header value.
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::Token)
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Whether a call that failed with `code` may be sent again unchanged: the server was
/// recovering or restarting (`UNAVAILABLE`) or shed it before reading it
/// (`RESOURCE_EXHAUSTED`). Only for calls that are safe to repeat: reads and idempotent admin
/// calls, not writes.
pub fn retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted)
}

/// Sends a call again, after a growing pause, while it fails with a [`retryable`] code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Calls at most, the first included (1: no retry).
    pub attempts: u32,
    /// The pause before the first retry; each later one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest pause.
    pub max_backoff: Duration,
}

impl Default for Retry {
    /// Five attempts, pausing 0.2, 0.4, 0.8 and 1.6 s (each jittered down to half) between
    /// them: long enough for a server loading a small data directory or shedding a burst,
    /// short enough for a person at the terminal to wait.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// No retry: the call is made once.
    pub const NEVER: Retry = Retry {
        attempts: 1,
        first_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// Makes `call` until it succeeds, fails with a code that is not [`retryable`], or the
    /// attempts are spent; returns the last outcome. Only for calls safe to repeat.
    pub async fn run<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(s) if retryable(s.code()) && attempt < self.attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The pause after failed attempt `attempt` (from 1): exponential, capped, and jittered
    /// down to half so that clients shed together do not come back together.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .first_backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_backoff);
        let random = RandomState::new().hash_one(attempt);
        let half = full / 2;
        half + half.mul_f64((random % 1024) as f64 / 1024.0)
    }
}

/// Why a snapshot upload failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The file could not be read or compressed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server refused the upload (or the call failed).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(Status),
}

/// Uploads the snapshot file at `path` for `view` (UploadSnapshot), zstd-compressed: the file
/// is compressed to a temporary file next to it first, since the header states the exact byte
/// count. Sent once (an upload replaces the view's data, so a retry is the caller's choice).
pub async fn upload_snapshot_file(
    client: &mut NativeClient,
    view: &str,
    path: &Path,
) -> Result<pb::UploadSnapshotResponse, UploadError> {
    use std::io::Read;

    use pb::upload_snapshot_request::Part;
    let zpath = path.with_extension("qsnap.zst");
    let file_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| UploadError::File { path: p, source }
    };
    let compress = || -> std::io::Result<(u64, u64)> {
        let input = std::fs::File::open(path)?;
        let raw = input.metadata()?.len();
        zstd::stream::copy_encode(input, std::fs::File::create(&zpath)?, 3)?;
        Ok((raw, std::fs::metadata(&zpath)?.len()))
    };
    let result = async {
        let (raw, total) = compress().map_err(file_err(path))?;
        let mut file = std::fs::File::open(&zpath).map_err(file_err(&zpath))?;
        let header = pb::UploadSnapshotRequest {
            part: Some(Part::Header(pb::UploadSnapshotHeader {
                view: view.to_owned(),
                total_bytes: total,
                zstd: true,
                uncompressed_bytes: raw,
            })),
        };
        // A read error ends the stream early; the server then refuses the short upload.
        let chunks = std::iter::from_fn(move || {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(pb::UploadSnapshotRequest {
                        part: Some(Part::Chunk(buf)),
                    })
                }
            }
        });
        client
            .upload_snapshot(tokio_stream::iter(std::iter::once(header).chain(chunks)))
            .await
            .map(tonic::Response::into_inner)
            .map_err(UploadError::Rpc)
    }
    .await;
    let _ = std::fs::remove_file(&zpath);
    result
}

/// Write batches for `view` from Arrow record batches laid out like the view's Parquet history
/// (docs/offline.md): the entity's join key columns, the event timestamp column (and the
/// created one when the view's source names it), and every feature's column. Rows for the same
/// entity are merged by the store's own rule (newest event time, then created time) before
/// sending, so the outcome is that of writing every row. A null key or event time is refused,
/// naming the column and row, rather than skipped.
pub fn write_requests(
    registry: &Registry,
    view: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<pb::WriteFeaturesRequest>, String> {
    let v = registry
        .view(view)
        .ok_or_else(|| format!("no feature view named {view:?}"))?;
    let entity = registry
        .view_entity(v)
        .ok_or_else(|| format!("feature view {view:?} has no entity"))?;
    let ts_col = v
        .source
        .as_ref()
        .map_or("event_timestamp", |s| s.timestamp_field.as_str());
    let required = entity
        .join_keys
        .iter()
        .map(|k| k.name.as_str())
        .chain(std::iter::once(ts_col));
    for col in required {
        let mut offset = 0;
        for b in &batches {
            // Only a column that has nulls is scanned for the first one.
            if let Some(a) = b.column_by_name(col).filter(|a| a.null_count() > 0) {
                if let Some(row) = (0..a.len()).find(|&r| a.is_null(r)) {
                    return Err(format!("column {col:?}: row {} is null", offset + row));
                }
            }
            offset += b.num_rows();
        }
    }
    let batches = batches
        .into_iter()
        .map(|b| narrow(v, b))
        .collect::<Result<Vec<_>, _>>()?;
    let history = History::from_batches(registry, view, batches, EpochUnit::Seconds)
        .map_err(|e| e.to_string())?;
    let opts = MaterializeOptions {
        start: i64::MIN,
        end: i64::MAX,
        threads: 1,
        progress: false,
    };
    Ok(writes_from_history(registry, &history, &opts)?.0)
}

/// Narrows Int64 columns of int32 features and Float64 columns of float32 features to the
/// declared width: data built in Python, pandas or JSON arrives 64-bit. An integer out of the
/// int32 range is refused, naming the column and row; a float64 is rounded to nearest.
fn narrow(view: &quiver_engine::FeatureView, batch: RecordBatch) -> Result<RecordBatch, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{ArrayRef, Float32Array, Int32Array};
    use arrow_schema::{DataType, Field, Schema};
    use quiver_engine::{ScalarType, ValueType};

    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut changed = false;
    for f in &view.features {
        let name = f.column.as_deref().unwrap_or(&f.name);
        let Some((i, field)) = schema.column_with_name(name) else {
            continue;
        };
        let col = &columns[i];
        let narrowed: ArrayRef = match (f.ty, field.data_type()) {
            (ValueType::Scalar(ScalarType::Int32), DataType::Int64) => {
                let a = col.as_primitive::<Int64Type>();
                let mut out = Vec::with_capacity(a.len());
                for (r, v) in a.values().iter().enumerate() {
                    match i32::try_from(*v) {
                        Ok(v) => out.push(v),
                        Err(_) if a.is_null(r) => out.push(0),
                        Err(_) => {
                            return Err(format!(
                                "column {name:?} (feature {:?}, int32): row {r} holds {v}, \
                                 outside the int32 range",
                                f.name
                            ))
                        }
                    }
                }
                std::sync::Arc::new(Int32Array::new(out.into(), a.nulls().cloned()))
            }
            (ValueType::Scalar(ScalarType::Float32), DataType::Float64) => {
                let a = col.as_primitive::<Float64Type>();
                std::sync::Arc::new(Float32Array::new(
                    a.values().iter().map(|v| *v as f32).collect(),
                    a.nulls().cloned(),
                ))
            }
            _ => continue,
        };
        fields[i] = Field::new(name, narrowed.data_type().clone(), field.is_nullable());
        columns[i] = narrowed;
        changed = true;
    }
    if !changed {
        return Ok(batch);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::proto::quiver::v1::GetStatsRequest;
    use crate::testing::TestServer;

    const TOKEN: &str = "s3cret-token-123456";

    #[test]
    fn bearer_token_sets_the_header_or_nothing() {
        let mut with = BearerToken::new(Some(TOKEN)).unwrap();
        let req = with.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            &format!("Bearer {TOKEN}")
        );
        let mut without = BearerToken::new(None).unwrap();
        let req = without.call(Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
        assert!(matches!(
            BearerToken::new(Some("line\nbreak")),
            Err(ClientError::Token)
        ));
    }

    #[test]
    fn settings_errors_name_what_is_wrong() {
        let e = Connect::new("not a uri").endpoint().unwrap_err();
        assert!(e.to_string().contains("\"not a uri\""), "{e}");
        let missing = Path::new("/nonexistent/quiver-ca.pem");
        let e = Connect::new("https://localhost:1")
            .ca_file(missing)
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/quiver-ca.pem"), "{e}");
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let r = Retry {
            attempts: 10,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        };
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (9, 400)] {
            let b = r.backoff(attempt);
            let full = Duration::from_millis(full);
            assert!(b >= full / 2 && b <= full, "attempt {attempt}: {b:?}");
        }
    }

    #[tokio::test]
    async fn retry_repeats_only_retryable_failures() {
        let r = Retry {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let calls = AtomicU32::new(0);
        let out = r
            .run(|| async {
                match calls.fetch_add(1, Ordering::Relaxed) {
                    0 => Err(Status::unavailable("recovering")),
                    1 => Err(Status::resource_exhausted("shed")),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::Relaxed), 3);

        // A failure that is not retryable is returned at once; a retryable one after the
        // last attempt.
        for (status, calls_made) in [
            (Status::invalid_argument("bad"), 1),
            (Status::unavailable("down"), 3),
        ] {
            calls.store(0, Ordering::Relaxed);
            let code = status.code();
            let out: Result<(), Status> = r
                .run(|| async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err(Status::new(code, status.message()))
                })
                .await;
            assert_eq!(out.unwrap_err().code(), code);
            assert_eq!(calls.load(Ordering::Relaxed), calls_made, "{code:?}");
        }
    }

    #[tokio::test]
    async fn connects_with_and_without_the_token() {
        let server = TestServer::start(|c| c.auth_token = Some(TOKEN.into())).await;
        let connect = Connect::new(server.url()).connect_timeout(Duration::from_secs(5));
        let mut anonymous = connect.native().await.unwrap();
        let refused = anonymous
            .get_stats(GetStatsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        let client = connect.clone().token(Some(TOKEN)).native().await.unwrap();
        // Recovery runs in the background: UNAVAILABLE until it is done, which Retry waits out.
        let stats = Retry::default()
            .run(|| {
                let mut c = client.clone();
                async move { c.get_stats(GetStatsRequest::default()).await }
            })
            .await
            .unwrap();
        assert_eq!(stats.into_inner().checkpoint_sequence, 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        let port = crate::testing::unused_port();
        let address = format!("http://127.0.0.1:{port}");
        let e = Connect::new(&address).native().await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains(&address), "{e}");
    }
}
