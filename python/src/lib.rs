//! The native half of the `quiver` Python package: a blocking client over the same Rust client
//! the CLI uses (`quiver_server::client`), with answers turned into Arrow record batches in Rust
//! and handed to pyarrow through the Arrow C data interface (no Python object per value).
//! The RPC and the conversion run with the GIL released. The Python half (`quiver/`) adds the
//! Feast-shaped conveniences (`entity_rows`, `to_dict`, `to_pandas`).

use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::ffi_stream::RecordBatchStreamReader;
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use prost::Message;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver_offline::{EpochUnit, FeaturePlan, History, JoinOptions, OfflineError, Registry};
use quiver_server::client::{
    upload_snapshot_file, write_requests, ClientError, Connect, FeastClient, NativeClient,
};
use quiver_server::proto::feast::serving as feast_pb;
use quiver_server::proto::quiver::v1 as pb;

pyo3::create_exception!(
    _quiver,
    QuiverError,
    PyException,
    "A call the server refused or could not answer; `code` is the gRPC status name \
     (e.g. \"INVALID_ARGUMENT\") and `message` the server's explanation, naming the field."
);

/// `FieldStatus` names, by wire number.
const STATUS_NAMES: [&str; 5] = [
    "INVALID",
    "PRESENT",
    "NULL_VALUE",
    "NOT_FOUND",
    "OUTSIDE_MAX_AGE",
];
const PRESENT: i32 = 1;
const NOT_FOUND: i32 = 3;

/// A `QuiverError` with `code` and `message` set.
fn error(py: Python<'_>, code: &str, message: &str) -> PyErr {
    let e = QuiverError::new_err(format!("{code}: {message}"));
    let value = e.value(py);
    // Setting attributes on a fresh exception object cannot fail short of memory exhaustion;
    // the exception is raised either way.
    let _ = value.setattr("code", code);
    let _ = value.setattr("message", message);
    e
}

/// tonic's code as gRPC spells it: `InvalidArgument` → `INVALID_ARGUMENT`.
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn status_error(py: Python<'_>, s: &tonic::Status) -> PyErr {
    error(py, &code_name(s.code()), s.message())
}

/// A connection to one Quiver server. Calls block the calling Python thread (with the GIL
/// released) on a runtime this client owns; a client made before `fork()` must not be used
/// after it.
#[pyclass(module = "quiver._quiver")]
struct Client {
    runtime: tokio::runtime::Runtime,
    native: NativeClient,
    /// Feast's serving API on the same connection (the Feast plugin's reads).
    feast: FeastClient,
}

/// One join key's values as sent.
#[derive(Debug, Clone)]
enum KeyValues {
    Int64(Vec<i64>),
    String(Vec<String>),
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (address, token=None, timeout=None, ca_cert=None))]
    fn new(
        py: Python<'_>,
        address: &str,
        token: Option<String>,
        timeout: Option<f64>,
        ca_cert: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let timeout = match timeout {
            Some(t) if !(t.is_finite() && t > 0.0) => {
                return Err(error(
                    py,
                    "INVALID_ARGUMENT",
                    "timeout: must be a positive number of seconds",
                ))
            }
            t => t.map(Duration::from_secs_f64),
        };
        // One background thread keeps the connection serviced between calls (HTTP/2 pings,
        // the server's GOAWAY), which a current-thread runtime would only do inside a call.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quiver-client")
            .enable_all()
            .build()
            .map_err(|e| {
                error(
                    py,
                    "INTERNAL",
                    &format!("cannot start the client runtime: {e}"),
                )
            })?;
        let mut connect = Connect::new(url)
            .token(token.as_deref())
            .request_timeout(timeout);
        if let Some(ca) = &ca_cert {
            connect = connect
                .ca_file(ca)
                .map_err(|e| error(py, "INVALID_ARGUMENT", &format!("ca_cert: {e}")))?;
        }
        let (native, feast) = py
            .detach(|| {
                runtime.block_on(async {
                    let channel = connect.channel().await?;
                    Ok::<_, ClientError>((
                        connect.native_on(channel.clone())?,
                        connect.feast_on(channel)?,
                    ))
                })
            })
            .map_err(|e| error(py, "UNAVAILABLE", &e.to_string()))?;
        Ok(Self {
            runtime,
            native,
            feast,
        })
    }

    /// Reads `features` (or the feature service) for the entities given as columns:
    /// `entities` maps each join key to a list of ints or of strings.
    #[pyo3(signature = (entities, features=None, feature_service=None, full_feature_names=false, max_age=None))]
    fn get_online_features(
        &self,
        py: Python<'_>,
        entities: &Bound<'_, PyDict>,
        features: Option<Vec<String>>,
        feature_service: Option<String>,
        full_feature_names: bool,
        max_age: Option<f64>,
    ) -> PyResult<OnlineResponse> {
        use pb::get_online_features_request::Features;
        let features = match (features, feature_service) {
            (Some(refs), None) => Features::Refs(pb::FeatureRefs { refs }),
            (None, Some(s)) => Features::FeatureService(s),
            _ => {
                return Err(error(
                    py,
                    "INVALID_ARGUMENT",
                    "give either features (\"view:feature\" references) or feature_service",
                ))
            }
        };
        let mut keys = Vec::with_capacity(entities.len());
        for (name, values) in entities.iter() {
            let name: String = name.extract().map_err(|_| {
                error(
                    py,
                    "INVALID_ARGUMENT",
                    "entities: join key names must be strings",
                )
            })?;
            let values = if let Ok(v) = values.extract::<Vec<i64>>() {
                KeyValues::Int64(v)
            } else if let Ok(v) = values.extract::<Vec<String>>() {
                KeyValues::String(v)
            } else {
                return Err(error(
                    py,
                    "INVALID_ARGUMENT",
                    &format!("entities[{name:?}]: expected a list of ints or a list of strings"),
                ));
            };
            keys.push((name, values));
        }
        let max_age = match max_age {
            None => None,
            Some(s) if s.is_finite() && s >= 0.0 => Some(prost_duration(s)),
            Some(_) => {
                return Err(error(
                    py,
                    "INVALID_ARGUMENT",
                    "max_age: must not be negative",
                ))
            }
        };
        let request = pb::GetOnlineFeaturesRequest {
            features: Some(features),
            keys: keys
                .iter()
                .map(|(name, v)| pb::KeyColumn {
                    name: name.clone(),
                    values: Some(match v {
                        KeyValues::Int64(v) => {
                            pb::key_column::Values::Int64Values(pb::Int64Values {
                                values: v.clone(),
                            })
                        }
                        KeyValues::String(v) => {
                            pb::key_column::Values::StringValues(pb::StringValues {
                                values: v.clone(),
                            })
                        }
                    }),
                })
                .collect(),
            full_feature_names,
            max_age,
        };
        let mut native = self.native.clone();
        let answer = py
            .detach(|| self.runtime.block_on(native.get_online_features(request)))
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        Ok(OnlineResponse { keys, answer })
    }

    /// Writes Arrow data (anything with `__arrow_c_stream__`: a pyarrow Table or
    /// RecordBatchReader, a Polars DataFrame) to `view`; the columns are those of the view's
    /// history: join keys, event timestamp, every feature. Returns
    /// `{"rows", "batches", "wal_sequence"}`.
    fn write<'py>(
        &self,
        py: Python<'py>,
        view: &str,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let batches = read_stream(py, data)?;
        let mut native = self.native.clone();
        let view = view.to_owned();
        let r = py.detach(|| {
            self.runtime.block_on(async move {
                let registry = fetch_registry(&mut native).await?;
                let requests = write_requests(&registry, &view, batches)
                    .map_err(|m| ("INVALID_ARGUMENT".to_owned(), m))?;
                native
                    .stream_write_features(tokio_stream::iter(requests))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| (code_name(s.code()), s.message().to_owned()))
            })
        });
        let r = r.map_err(|(code, m)| error(py, &code, &m))?;
        let d = PyDict::new(py);
        d.set_item("rows", r.rows)?;
        d.set_item("batches", r.batches)?;
        d.set_item("wal_sequence", r.wal_sequence)?;
        Ok(d)
    }

    /// Feast's `GetOnlineFeatures` (the server's `feast.serving.ServingService`), request and
    /// answer as serialized protobuf: the Feast plugin builds and parses them with Feast's own
    /// message classes, so every value arrives as Feast's `Value` without a conversion in
    /// Python.
    fn feast_get_online_features<'py>(
        &self,
        py: Python<'py>,
        request: &[u8],
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let request = feast_pb::GetOnlineFeaturesRequest::decode(request).map_err(|e| {
            error(
                py,
                "INVALID_ARGUMENT",
                &format!("not a feast.serving.GetOnlineFeaturesRequest: {e}"),
            )
        })?;
        let mut feast = self.feast.clone();
        let answer = py
            .detach(|| {
                self.runtime
                    .block_on(feast.get_online_features(request))
                    .map(|r| r.into_inner().encode_to_vec())
            })
            .map_err(|s| status_error(py, &s))?;
        Ok(pyo3::types::PyBytes::new(py, &answer))
    }

    /// Loads a snapshot file already on the server's filesystem into `view`.
    fn load_snapshot<'py>(
        &self,
        py: Python<'py>,
        view: String,
        path: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut native = self.native.clone();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(native.load_snapshot(pb::LoadSnapshotRequest { view, path }))
            })
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        let d = PyDict::new(py);
        d.set_item("view", r.view)?;
        d.set_item("entities", r.entities)?;
        d.set_item("bytes", r.bytes)?;
        Ok(d)
    }

    /// Uploads a local snapshot file (zstd-compressed on the way) and loads it into `view`.
    fn upload_snapshot<'py>(
        &self,
        py: Python<'py>,
        view: &str,
        path: std::path::PathBuf,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut native = self.native.clone();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(upload_snapshot_file(&mut native, view, &path))
            })
            .map_err(|e| match e {
                quiver_server::client::UploadError::Rpc(s) => status_error(py, &s),
                other => error(py, "INVALID_ARGUMENT", &other.to_string()),
            })?;
        let d = PyDict::new(py);
        d.set_item("view", r.view)?;
        d.set_item("entities", r.entities)?;
        d.set_item("received_bytes", r.received_bytes)?;
        d.set_item("stored_bytes", r.stored_bytes)?;
        Ok(d)
    }

    /// Applies a registry given as TOML text. Returns `{"version", "applied", "changes",
    /// "canonical_toml"}`.
    #[pyo3(signature = (toml, dry_run=false, allow_removals=false))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        toml: String,
        dry_run: bool,
        allow_removals: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut native = self.native.clone();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(native.apply_registry(pb::ApplyRegistryRequest {
                        toml,
                        dry_run,
                        allow_removals,
                    }))
            })
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        let d = PyDict::new(py);
        d.set_item("version", r.version)?;
        d.set_item("applied", r.applied)?;
        d.set_item("changes", r.changes)?;
        d.set_item("canonical_toml", r.canonical_toml)?;
        Ok(d)
    }

    /// The server's registry: `(version, canonical TOML)`.
    fn registry(&self, py: Python<'_>) -> PyResult<(u64, String)> {
        let mut native = self.native.clone();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(native.get_registry(pb::GetRegistryRequest {}))
            })
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        Ok((r.version, r.toml))
    }

    /// Per-view sizes and freshness, the WAL and the last checkpoint, as a dict.
    #[pyo3(signature = (views=None))]
    fn stats<'py>(
        &self,
        py: Python<'py>,
        views: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut native = self.native.clone();
        let views = views.unwrap_or_default();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(native.get_stats(pb::GetStatsRequest { views }))
            })
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        let d = PyDict::new(py);
        let list = PyList::empty(py);
        for v in &r.views {
            let e = PyDict::new(py);
            e.set_item("view", &v.view)?;
            e.set_item("memory_entities", v.memory_entities)?;
            e.set_item("memory_bytes", v.memory_bytes)?;
            e.set_item("snapshot_entities", v.snapshot_entities)?;
            e.set_item("snapshot_bytes", v.snapshot_bytes)?;
            e.set_item("newest_event_time_micros", v.newest_event_time_micros)?;
            e.set_item("newest_event_age_micros", v.newest_event_age_micros)?;
            list.append(e)?;
        }
        d.set_item("views", list)?;
        if let Some(w) = &r.wal {
            let e = PyDict::new(py);
            e.set_item("bytes", w.bytes)?;
            e.set_item("segments", w.segments)?;
            e.set_item("last_sequence", w.last_sequence)?;
            e.set_item("synced_sequence", w.synced_sequence)?;
            e.set_item("poisoned", &w.poisoned)?;
            d.set_item("wal", e)?;
        }
        d.set_item("checkpoint_sequence", r.checkpoint_sequence)?;
        d.set_item("checkpoint_time_micros", r.checkpoint_time_micros)?;
        d.set_item("registry_version", r.registry_version)?;
        d.set_item("server_time_micros", r.server_time_micros)?;
        Ok(d)
    }

    /// Folds the WAL into new snapshots. Returns `{"checkpoint_sequence",
    /// "checkpoint_time_micros", "wal_bytes_freed", "snapshots": [{"view", "file", "entities",
    /// "bytes"}]}`.
    fn checkpoint<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut native = self.native.clone();
        let r = py
            .detach(|| {
                self.runtime
                    .block_on(native.checkpoint(pb::CheckpointRequest {}))
            })
            .map_err(|s| status_error(py, &s))?
            .into_inner();
        let d = PyDict::new(py);
        d.set_item("checkpoint_sequence", r.checkpoint_sequence)?;
        d.set_item("checkpoint_time_micros", r.checkpoint_time_micros)?;
        d.set_item("wal_bytes_freed", r.wal_bytes_freed)?;
        let list = PyList::empty(py);
        for f in &r.snapshots {
            let e = PyDict::new(py);
            e.set_item("view", &f.view)?;
            e.set_item("file", &f.file)?;
            e.set_item("entities", f.entities)?;
            e.set_item("bytes", f.bytes)?;
            list.append(e)?;
        }
        d.set_item("snapshots", list)?;
        Ok(d)
    }
}

/// The server's registry, parsed (the write path needs each view's types and columns).
async fn fetch_registry(native: &mut NativeClient) -> Result<Registry, (String, String)> {
    let r = native
        .get_registry(pb::GetRegistryRequest {})
        .await
        .map_err(|s| (code_name(s.code()), s.message().to_owned()))?
        .into_inner();
    Registry::from_toml(&r.toml).map_err(|e| {
        (
            "INTERNAL".to_owned(),
            format!("the server's registry does not parse: {e}"),
        )
    })
}

/// Every batch of an Arrow stream (`__arrow_c_stream__`, the PyCapsule protocol).
fn read_stream(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    let reader = RecordBatchStreamReader::from_pyarrow_bound(data).map_err(|e| {
        error(
            py,
            "INVALID_ARGUMENT",
            &format!("expected Arrow data (a pyarrow Table or RecordBatchReader): {e}"),
        )
    })?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| {
        error(
            py,
            "INVALID_ARGUMENT",
            &format!("reading the Arrow data: {e}"),
        )
    })
}

/// An offline error as a `QuiverError`: bad input is INVALID_ARGUMENT, unreadable files
/// DATA_LOSS, the rest INTERNAL.
fn offline_error(py: Python<'_>, e: &OfflineError) -> PyErr {
    let code = match e {
        OfflineError::Io { .. } => "UNAVAILABLE",
        OfflineError::Parquet { .. } => "DATA_LOSS",
        OfflineError::OutputExists { .. } => "ALREADY_EXISTS",
        _ => "INVALID_ARGUMENT",
    };
    error(py, code, &e.to_string())
}

/// A point-in-time-correct training set for the entity rows in `entities` (Arrow data with
/// the join keys and `timestamp_column`), from the registry's Parquet histories: the join
/// `quiver historical` runs, on data already in memory. `history` maps a view to another
/// history path. Returns the entity columns followed by one column per feature, as a list of
/// record batches.
#[pyfunction]
#[pyo3(signature = (registry, entities, features=None, feature_service=None, full_feature_names=false, timestamp_column="event_timestamp".to_owned(), history=None, epoch_unit="s".to_owned(), threads=0))]
#[allow(clippy::too_many_arguments)]
fn get_historical_features<'py>(
    py: Python<'py>,
    registry: std::path::PathBuf,
    entities: &Bound<'py, PyAny>,
    features: Option<Vec<String>>,
    feature_service: Option<String>,
    full_feature_names: bool,
    timestamp_column: String,
    history: Option<Vec<(String, std::path::PathBuf)>>,
    epoch_unit: String,
    threads: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let batches = read_stream(py, entities)?;
    let joined = py.detach(|| -> Result<Vec<RecordBatch>, OfflineError> {
        let reg = Registry::load(&registry)?;
        let refs = match (features, feature_service) {
            (Some(f), None) => f,
            (None, Some(s)) => reg
                .service(&s)
                .ok_or_else(|| {
                    OfflineError::InvalidArgument(format!("no feature service named {s:?}"))
                })?
                .features
                .clone(),
            _ => {
                return Err(OfflineError::InvalidArgument(
                    "give either features (\"view:feature\" references) or feature_service".into(),
                ))
            }
        };
        let plan = FeaturePlan::new(&reg, &refs, full_feature_names)?;
        let epoch = EpochUnit::parse(&epoch_unit).map_err(OfflineError::InvalidArgument)?;
        let base = registry.parent().unwrap_or(std::path::Path::new("."));
        let histories = History::open_all(
            &reg,
            &plan.views(&reg),
            base,
            &history.unwrap_or_default(),
            epoch,
        )?;
        let opts = JoinOptions {
            full_feature_names,
            timestamp_column,
            epoch_unit: epoch,
            threads,
            ..JoinOptions::default()
        };
        batches
            .iter()
            .map(|b| quiver_offline::join_batch(&reg, &plan, &histories, b, &opts))
            .collect()
    });
    let joined = joined.map_err(|e| offline_error(py, &e))?;
    joined.to_pyarrow(py)
}

/// Runs `quiver materialize` with these words (e.g. `["--registry", "r.toml", "--view", "v",
/// "--server", "127.0.0.1:6566"]`): exactly the command line's code, with the GIL released.
#[pyfunction]
fn materialize(py: Python<'_>, words: Vec<String>) -> PyResult<()> {
    py.detach(|| quiver_server::run_words(std::iter::once("materialize".to_owned()).chain(words)))
        .map_err(|m| error(py, "INVALID_ARGUMENT", &m))
}

fn prost_duration(seconds: f64) -> prost_types::Duration {
    let whole = seconds.trunc();
    prost_types::Duration {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9) as i32,
    }
}

/// One GetOnlineFeatures answer, with the keys it was asked for.
#[pyclass(module = "quiver._quiver")]
struct OnlineResponse {
    keys: Vec<(String, KeyValues)>,
    answer: pb::GetOnlineFeaturesResponse,
}

#[pymethods]
impl OnlineResponse {
    /// The output feature names, in request order.
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.answer.feature_names.clone()
    }

    /// Rows in the answer (one per requested entity).
    #[getter]
    fn row_count(&self) -> u32 {
        self.answer.row_count
    }

    /// The answer as a pyarrow RecordBatch: the join keys, then one column per feature (null
    /// where the value is not PRESENT); with `include_status`, a `<feature>__status` string
    /// column each, and with `include_event_timestamps` a `<feature>__event_timestamp`.
    #[pyo3(signature = (include_status=false, include_event_timestamps=false))]
    fn to_arrow<'py>(
        &self,
        py: Python<'py>,
        include_status: bool,
        include_event_timestamps: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = py
            .detach(|| self.batch(include_status, include_event_timestamps))
            .map_err(|e| error(py, "INTERNAL", &format!("building the Arrow answer: {e}")))?;
        batch.to_pyarrow(py)
    }
}

impl OnlineResponse {
    fn batch(&self, status: bool, timestamps: bool) -> Result<RecordBatch, ArrowError> {
        let rows = self.answer.row_count as usize;
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, v) in &self.keys {
            let (ty, a): (DataType, ArrayRef) = match v {
                KeyValues::Int64(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
                KeyValues::String(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
            };
            fields.push(Field::new(name, ty, false));
            arrays.push(a);
        }
        for (name, c) in self.answer.feature_names.iter().zip(&self.answer.columns) {
            if c.statuses.len() != rows {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "column {name:?}: {} statuses for {rows} rows",
                    c.statuses.len()
                )));
            }
            let present: Vec<bool> = c.statuses.iter().map(|&s| s == PRESENT).collect();
            let values = c.values.as_ref().and_then(|v| v.data.as_ref());
            let a = column(values, rows, Some(NullBuffer::from(present)))?;
            fields.push(Field::new(name, a.data_type().clone(), true));
            arrays.push(a);
            if status {
                let names: StringArray = c
                    .statuses
                    .iter()
                    .map(|&s| Some(STATUS_NAMES.get(s as usize).copied().unwrap_or("INVALID")))
                    .collect();
                fields.push(Field::new(format!("{name}__status"), DataType::Utf8, false));
                arrays.push(Arc::new(names));
            }
            if timestamps {
                let known: Vec<bool> = c.statuses.iter().map(|&s| s != NOT_FOUND).collect();
                let ts = TimestampMicrosecondArray::new(
                    c.event_timestamps.clone().into(),
                    Some(NullBuffer::from(known)),
                )
                .with_timezone("UTC");
                fields.push(Field::new(
                    format!("{name}__event_timestamp"),
                    ts.data_type().clone(),
                    true,
                ));
                arrays.push(Arc::new(ts));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }
}

/// One answer column as Arrow, with `nulls` (None: every value valid).
fn column(
    data: Option<&pb::column::Data>,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, ArrowError> {
    use pb::column::Data;
    let short = |n: usize| {
        ArrowError::InvalidArgumentError(format!("a column holds {n} values for {rows} rows"))
    };
    let check = |n: usize| if n == rows { Ok(()) } else { Err(short(n)) };
    Ok(match data {
        None => {
            return Err(ArrowError::InvalidArgumentError(
                "a column without values".into(),
            ))
        }
        Some(Data::BoolValues(v)) => {
            check(v.values.len())?;
            Arc::new(BooleanArray::new(v.values.iter().copied().collect(), nulls))
        }
        Some(Data::Int32Values(v)) => {
            check(v.values.len())?;
            Arc::new(Int32Array::new(v.values.clone().into(), nulls))
        }
        Some(Data::Int64Values(v)) => {
            check(v.values.len())?;
            Arc::new(Int64Array::new(v.values.clone().into(), nulls))
        }
        Some(Data::Float32Values(v)) => {
            check(v.values.len())?;
            Arc::new(Float32Array::new(v.values.clone().into(), nulls))
        }
        Some(Data::Float64Values(v)) => {
            check(v.values.len())?;
            Arc::new(Float64Array::new(v.values.clone().into(), nulls))
        }
        Some(Data::TimestampValues(v)) => {
            check(v.micros.len())?;
            Arc::new(
                TimestampMicrosecondArray::new(v.micros.clone().into(), nulls).with_timezone("UTC"),
            )
        }
        Some(Data::StringValues(v)) => {
            check(v.values.len())?;
            let mut b = StringBuilder::with_capacity(rows, v.values.iter().map(String::len).sum());
            for (i, s) in v.values.iter().enumerate() {
                if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                    b.append_value(s);
                } else {
                    b.append_null();
                }
            }
            Arc::new(b.finish())
        }
        Some(Data::BytesValues(v)) => {
            check(v.values.len())?;
            let mut b = BinaryBuilder::with_capacity(rows, v.values.iter().map(Vec::len).sum());
            for (i, s) in v.values.iter().enumerate() {
                if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                    b.append_value(s);
                } else {
                    b.append_null();
                }
            }
            Arc::new(b.finish())
        }
        Some(Data::VectorValues(v)) => {
            let dim = v.dim as usize;
            if v.values.len() != dim * rows {
                return Err(short(v.values.len() / dim.max(1)));
            }
            let items = Arc::new(Float32Array::from(v.values.clone()));
            let dim = i32::try_from(dim)
                .map_err(|_| ArrowError::InvalidArgumentError("vector too long".into()))?;
            Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, false)),
                dim,
                items,
                nulls,
            )?)
        }
        Some(Data::ListValues(v)) => {
            check(v.lengths.len())?;
            let total: usize = v.lengths.iter().map(|&l| l as usize).sum();
            let items = column(v.items.as_ref().and_then(|c| c.data.as_ref()), total, None)?;
            let field = Arc::new(Field::new_list_field(items.data_type().clone(), false));
            Arc::new(ListArray::try_new(
                field,
                OffsetBuffer::from_lengths(v.lengths.iter().map(|&l| l as usize)),
                items,
                nulls,
            )?)
        }
    })
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<OnlineResponse>()?;
    m.add_function(wrap_pyfunction!(get_historical_features, m)?)?;
    m.add_function(wrap_pyfunction!(materialize, m)?)?;
    m.add("QuiverError", m.py().get_type::<QuiverError>())?;
    Ok(())
}
