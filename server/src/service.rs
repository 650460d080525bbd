//! `quiver.v1.FeatureStore`: the native API.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use quiver_engine::{Clock, GetResult, KeyBatch, ReadOptions, Registry, SystemClock};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{
    column_to_proto, keys_from_columns, pooled_result, registry_to_proto, rows_from_write,
    OnlineAnswer, OnlineRequest,
};
use crate::error::{status_of, Origin};
use crate::limits::{quote, Api};
use crate::metrics::Rpc;
use crate::proto::quiver::v1 as pb;
use crate::state::{blocking, AppState};

/// The native service.
#[derive(Debug, Clone)]
pub(crate) struct FeatureStoreService {
    pub(crate) state: Arc<AppState>,
}

fn server_err(e: quiver_engine::EngineError) -> Status {
    status_of(&e, Origin::Server)
}

/// Converts a protobuf duration to microseconds, refusing negative ones.
pub(crate) fn max_age_micros(d: Option<&prost_types::Duration>) -> Result<Option<i64>, Status> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(Status::invalid_argument("max_age: must not be negative"));
    }
    if d.nanos >= 1_000_000_000 {
        return Err(Status::invalid_argument(format!(
            "max_age.nanos: {} is not below 1000000000 (whole seconds go in max_age.seconds)",
            d.nanos
        )));
    }
    Ok(Some(
        d.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(d.nanos / 1000)),
    ))
}

/// The output names for a selection, refusing duplicates without full names.
pub(crate) fn output_names(
    sel: &quiver_engine::Selection,
    full: bool,
) -> Result<Vec<String>, Status> {
    let names = sel.names(full);
    if !full {
        check_unique_names(&names)?;
    }
    Ok(names)
}

/// The feature references of the feature service `name`, or NOT_FOUND.
pub(crate) fn service_features(reg: &Registry, name: &str) -> Result<Vec<String>, Status> {
    reg.service(name)
        .map(|s| s.features.clone())
        .ok_or_else(|| {
            Status::not_found(format!(
                "feature_service: no feature service named {name:?}"
            ))
        })
}

/// Refuses two output columns with the same bare name (without full feature names, features of
/// different views can collide).
pub(crate) fn check_unique_names(names: &[String]) -> Result<(), Status> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(Status::invalid_argument(format!(
                "features: two requested features are both named {n:?}; set \
                 full_feature_names to tell them apart"
            )));
        }
    }
    Ok(())
}

impl FeatureStoreService {
    /// One GetOnlineFeatures read, answered in the engine's columns (a pooled result buffer).
    pub(crate) fn get_online(&self, req: OnlineRequest) -> Result<OnlineAnswer, Status> {
        let db = self.state.db()?;
        let refs: Vec<String> = match req.features {
            Some(pb::get_online_features_request::Features::Refs(r)) => r.refs,
            Some(pb::get_online_features_request::Features::FeatureService(name)) => {
                service_features(&db.registry(), &name)?
            }
            None => {
                return Err(Status::invalid_argument(
                    "features: give refs (\"view:feature\") or a feature_service",
                ))
            }
        };
        if refs.is_empty() {
            return Err(Status::invalid_argument("features: no features requested"));
        }
        let limits = &self.state.read_limits;
        limits.check_refs(&refs)?;
        let sel = db.select(&refs).map_err(server_err)?;
        let names = output_names(&sel, req.full_feature_names)?;
        let mut keys = KeyBatch::new();
        let rows = keys_from_columns(
            sel.entity(),
            &req.keys,
            self.state.config.max_entities_per_request,
            &mut keys,
        )?;
        let budget = limits.budget(rows, &sel.types(), Api::Native)?;
        let opts = ReadOptions {
            max_age: max_age_micros(req.max_age.as_ref())?,
            now: None,
            max_variable_bytes: Some(budget),
        };
        let mut answer = OnlineAnswer {
            names,
            result: Some(pooled_result()),
            rows: rows as u32,
        };
        let out = answer.result.get_or_insert_with(GetResult::new);
        db.get(&sel, &keys, &opts, out)
            .map_err(|e| limits.gathered(e).unwrap_or_else(server_err))?;
        for c in &out.columns {
            self.state.metrics.count_statuses(&c.statuses);
        }
        Ok(answer)
    }

    async fn write_batch(&self, req: pb::WriteFeaturesRequest) -> Result<(u64, u64), Status> {
        let db = self.state.db()?;
        if req.view.is_empty() {
            return Err(Status::invalid_argument(
                "view: empty; name the feature view to write",
            ));
        }
        let reg = db.registry();
        let view = reg.view(&req.view).ok_or_else(|| {
            Status::not_found(format!("view: no feature view named {}", quote(&req.view)))
        })?;
        let entity = reg
            .view_entity(view)
            .ok_or_else(|| Status::internal(format!("view {:?} has no entity", view.name)))?;
        let rows = rows_from_write(
            view,
            entity,
            &req,
            &self.state.write_limits,
            db.store().clock().now_micros(),
        )?;
        let n = rows.len() as u64;
        let name = req.view;
        let seq = blocking(move || db.write(&name, &rows).map_err(server_err)).await?;
        Ok((n, seq))
    }
}

#[tonic::async_trait]
impl pb::feature_store_server::FeatureStore for FeatureStoreService {
    async fn get_online_features(
        &self,
        request: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        // Served by `online::NativeService`, which encodes the answer without this message;
        // kept for callers of the trait (and as the oracle of the encoding's tests).
        let call = self.state.begin(Rpc::GetOnlineFeatures);
        let answer = call.finish(self.get_online(request.into_inner().into()))?;
        let columns = answer.result.as_ref().map_or(&[][..], |r| &r.columns);
        Ok(Response::new(pb::GetOnlineFeaturesResponse {
            feature_names: answer.names.clone(),
            columns: columns.iter().cloned().map(column_to_proto).collect(),
            row_count: answer.rows,
        }))
    }

    async fn write_features(
        &self,
        request: Request<pb::WriteFeaturesRequest>,
    ) -> Result<Response<pb::WriteFeaturesResponse>, Status> {
        let call = self.state.begin(Rpc::WriteFeatures);
        let r = self.write_batch(request.into_inner()).await;
        call.finish(r.map(|(rows, seq)| {
            Response::new(pb::WriteFeaturesResponse {
                rows,
                batches: 1,
                wal_sequence: seq,
            })
        }))
    }

    async fn stream_write_features(
        &self,
        request: Request<Streaming<pb::WriteFeaturesRequest>>,
    ) -> Result<Response<pb::WriteFeaturesResponse>, Status> {
        let call = self.state.begin(Rpc::StreamWriteFeatures);
        let mut stream = request.into_inner();
        let mut total = pb::WriteFeaturesResponse::default();
        let result = async {
            while let Some(msg) = stream.next().await {
                // A batch that cannot be decoded (e.g. over the size limit) fails like any other.
                let named = |s: Status| {
                    Status::new(
                        s.code(),
                        format!(
                            "batch {} (after {} accepted rows): {}",
                            total.batches,
                            total.rows,
                            s.message()
                        ),
                    )
                };
                let (rows, seq) = match msg {
                    Ok(msg) => self.write_batch(msg).await.map_err(named)?,
                    Err(s) => return Err(named(s)),
                };
                total.rows += rows;
                total.batches += 1;
                total.wal_sequence = seq;
            }
            if total.batches == 0 {
                return Err(Status::invalid_argument(
                    "the stream ended without a batch; send at least one WriteFeaturesRequest",
                ));
            }
            Ok(Response::new(total))
        }
        .await;
        call.finish(result)
    }

    async fn load_snapshot(
        &self,
        request: Request<pb::LoadSnapshotRequest>,
    ) -> Result<Response<pb::LoadSnapshotResponse>, Status> {
        let call = self.state.begin(Rpc::LoadSnapshot);
        let req = request.into_inner();
        let result = async {
            let db = self.state.db()?;
            if req.path.is_empty() {
                return Err(Status::invalid_argument("path: empty"));
            }
            let path = PathBuf::from(&req.path);
            let view = req.view.clone();
            let (entities, bytes) = blocking(move || {
                // A missing or unreadable path is the caller's mistake, not an internal error.
                let meta = std::fs::metadata(&path).map_err(|e| {
                    let msg = format!("path: cannot open {}: {e}", path.display());
                    match e.kind() {
                        std::io::ErrorKind::NotFound => Status::not_found(msg),
                        _ => Status::invalid_argument(msg),
                    }
                })?;
                if !meta.is_file() {
                    return Err(Status::invalid_argument(format!(
                        "path: {} is not a regular file",
                        path.display()
                    )));
                }
                let entities = db
                    .load_snapshot(&view, &path)
                    .map_err(|e| status_of(&e, Origin::CallerFile))?;
                Ok((entities, meta.len()))
            })
            .await?;
            Ok(Response::new(pb::LoadSnapshotResponse {
                view: req.view,
                entities,
                bytes,
            }))
        }
        .await;
        call.finish(result)
    }

    async fn upload_snapshot(
        &self,
        request: Request<Streaming<pb::UploadSnapshotRequest>>,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        let call = self.state.begin(Rpc::UploadSnapshot);
        let result = self.upload(request.into_inner()).await;
        call.finish(result.map(Response::new))
    }

    async fn checkpoint(
        &self,
        _request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let call = self.state.begin(Rpc::Checkpoint);
        let result = async {
            let db = self.state.db()?;
            let before = db.stats().wal.bytes;
            let db2 = db.clone();
            let st = blocking(move || db2.checkpoint().map_err(server_err)).await?;
            let after = db.stats();
            Ok(Response::new(pb::CheckpointResponse {
                checkpoint_sequence: st.seq,
                checkpoint_time_micros: after.checkpoint_micros,
                snapshots: after
                    .views
                    .iter()
                    .filter(|v| v.base_entities > 0)
                    .map(|v| pb::SnapshotFile {
                        view: v.view.clone(),
                        file: String::new(),
                        entities: v.base_entities,
                        bytes: v.base_bytes,
                    })
                    .collect(),
                wal_bytes_freed: before.saturating_sub(after.wal.bytes),
            }))
        }
        .await;
        call.finish(result)
    }

    async fn apply_registry(
        &self,
        request: Request<pb::ApplyRegistryRequest>,
    ) -> Result<Response<pb::ApplyRegistryResponse>, Status> {
        let call = self.state.begin(Rpc::ApplyRegistry);
        let req = request.into_inner();
        let result = async {
            let db = self.state.db()?;
            let next = Registry::from_toml(&req.toml)
                .map_err(|e| Status::invalid_argument(format!("toml: {e}")))?;
            let current = db.registry();
            let merged = current
                .evolve(next)
                .map_err(|e| status_of(&e.into(), Origin::Server))?;
            let removals = current.removals(&merged);
            if !removals.is_empty() && !req.allow_removals && !req.dry_run {
                return Err(Status::failed_precondition(format!(
                    "registry: it leaves out what the current registry has ({}); add them back, \
                     or pass allow_removals (quiver apply --allow-removals) to remove them",
                    removals.join("; ")
                )));
            }
            let mut changes = removals;
            changes.extend(current.changes(&merged));
            if req.dry_run || changes.is_empty() {
                return Ok(Response::new(pb::ApplyRegistryResponse {
                    version: db.stats().registry_version,
                    applied: false,
                    changes,
                    canonical_toml: merged.to_toml(),
                }));
            }
            let db2 = db.clone();
            let applied = blocking(move || db2.apply_registry(merged).map_err(server_err)).await?;
            Ok(Response::new(pb::ApplyRegistryResponse {
                version: db.stats().registry_version,
                applied: true,
                changes,
                canonical_toml: applied.to_toml(),
            }))
        }
        .await;
        call.finish(result)
    }

    async fn get_registry(
        &self,
        _request: Request<pb::GetRegistryRequest>,
    ) -> Result<Response<pb::GetRegistryResponse>, Status> {
        let call = self.state.begin(Rpc::GetRegistry);
        let result = self.state.db().map(|db| {
            let reg = db.registry();
            Response::new(registry_to_proto(&reg, db.stats().registry_version))
        });
        call.finish(result)
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let call = self.state.begin(Rpc::GetStats);
        let req = request.into_inner();
        let result = self.state.db().and_then(|db| {
            let st = db.stats();
            for v in &req.views {
                if !st.views.iter().any(|s| &s.view == v) {
                    return Err(Status::not_found(format!(
                        "views: no feature view named {v:?}"
                    )));
                }
            }
            let now = SystemClock.now_micros();
            Ok(Response::new(pb::GetStatsResponse {
                views: st
                    .views
                    .iter()
                    .filter(|v| req.views.is_empty() || req.views.contains(&v.view))
                    .map(|v| pb::ViewStats {
                        view: v.view.clone(),
                        memory_entities: v.entities,
                        memory_bytes: v.bytes,
                        snapshot_entities: v.base_entities,
                        snapshot_bytes: v.base_bytes,
                        newest_event_time_micros: v.newest_event_ts,
                        newest_event_age_micros: if v.newest_event_ts == 0 {
                            0
                        } else {
                            now - v.newest_event_ts
                        },
                        compression: v.compression.as_ref().map(|c| pb::SnapshotCompression {
                            policy: c.policy.name().into(),
                            method: c.method.name().into(),
                            level: c.level,
                            dictionary_bytes: c.dict_bytes,
                            sample_records: c.sample_records,
                            sample_plain_bytes: c.sample_plain_bytes,
                            sample_packed_bytes: c.sample_packed_bytes,
                            decode_ns: c.decode_ns,
                        }),
                    })
                    .collect(),
                wal: Some(pb::WalStats {
                    bytes: st.wal.bytes,
                    segments: st.wal.segments as u64,
                    last_sequence: st.wal.last_seq,
                    synced_sequence: st.wal.synced_seq,
                    poisoned: st.wal.poisoned.clone().unwrap_or_default(),
                }),
                checkpoint_sequence: st.checkpoint_seq,
                checkpoint_time_micros: st.checkpoint_micros,
                registry_version: st.registry_version,
                server_time_micros: now,
            }))
        });
        call.finish(result)
    }
}

impl FeatureStoreService {
    async fn upload(
        &self,
        mut stream: Streaming<pb::UploadSnapshotRequest>,
    ) -> Result<pb::UploadSnapshotResponse, Status> {
        let db = self.state.db()?;
        let header = match stream.next().await {
            Some(Ok(pb::UploadSnapshotRequest {
                part: Some(pb::upload_snapshot_request::Part::Header(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first upload message must be the header",
                ))
            }
        };
        let limit = self.state.config.max_upload_bytes;
        if header.total_bytes > limit || header.uncompressed_bytes > limit {
            return Err(Status::invalid_argument(format!(
                "header.total_bytes: {} bytes exceeds the server's upload limit of {limit}",
                header.total_bytes.max(header.uncompressed_bytes)
            )));
        }
        if db.registry().view(&header.view).is_none() {
            return Err(Status::not_found(format!(
                "header.view: no feature view named {:?}",
                header.view
            )));
        }
        let dir = db.dir().join(quiver_engine::inspect::SNAPSHOT_DIR);
        let path = dir.join(format!(
            ".upload-{}-{}{}",
            std::process::id(),
            SystemClock.now_micros(),
            quiver_engine::inspect::SNAPSHOT_TEMP_SUFFIX
        ));
        let file = std::fs::File::create(&path)
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", path.display())))?;
        let cleanup = TempFile(path.clone());
        let mut sink: Box<dyn Write + Send> = if header.zstd {
            Box::new(
                zstd::stream::write::Decoder::new(LimitedWriter {
                    inner: file,
                    written: 0,
                    limit,
                })
                .map_err(|e| Status::internal(format!("zstd: {e}")))?,
            )
        } else {
            Box::new(LimitedWriter {
                inner: file,
                written: 0,
                limit,
            })
        };
        let mut received = 0u64;
        while let Some(msg) = stream.next().await {
            match msg?.part {
                Some(pb::upload_snapshot_request::Part::Chunk(c)) => {
                    received += c.len() as u64;
                    if received > header.total_bytes {
                        return Err(Status::invalid_argument(format!(
                            "chunks exceed header.total_bytes ({})",
                            header.total_bytes
                        )));
                    }
                    sink.write_all(&c).map_err(|e| {
                        Status::invalid_argument(format!("chunk at byte {received}: {e}"))
                    })?;
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "only chunks may follow the header",
                    ))
                }
            }
        }
        if received != header.total_bytes {
            return Err(Status::invalid_argument(format!(
                "upload ended after {received} bytes; header.total_bytes said {}",
                header.total_bytes
            )));
        }
        sink.flush()
            .map_err(|e| Status::invalid_argument(format!("upload: {e}")))?;
        drop(sink);
        let stored = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let view = header.view.clone();
        let p = path.clone();
        let entities = blocking(move || {
            let f = std::fs::File::open(&p).and_then(|f| f.sync_all());
            f.map_err(|e| Status::internal(format!("fsync upload: {e}")))?;
            db.load_snapshot(&view, &p)
                .map_err(|e| status_of(&e, Origin::CallerFile))
        })
        .await?;
        drop(cleanup);
        Ok(pb::UploadSnapshotResponse {
            view: header.view,
            entities,
            received_bytes: received,
            stored_bytes: stored,
        })
    }
}

/// Deletes the temporary upload file however the upload ends (a loaded snapshot was linked).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A writer that refuses to grow past a limit: a decompression bomb stops at the limit.
struct LimitedWriter {
    inner: std::fs::File,
    written: u64,
    limit: u64,
}

impl Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "snapshot exceeds the server's upload limit of {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
