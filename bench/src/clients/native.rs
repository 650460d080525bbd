//! Quiver's side of a comparison: native API requests built from the dataset, answers checked
//! against it, and the bulk-load files (snapshots built with [`SnapshotBuilder`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use quiver_engine::{Registry, SnapshotBuilder, Value};
use quiver_server::client::NativeClient;
use quiver_server::proto::quiver::v1 as pb;

use crate::clients::layout::JOIN_KEY;
use crate::dataset::{expected, feature_refs, Data, Expected, EMBEDDING_VIEW, USER_STATS, VIEW};
use crate::error::io;
use crate::harness::check::{embedding_to_row, to_row};
use crate::harness::db::view_entity;
use crate::harness::host::now_micros;
use crate::{BenchError, Result};

/// `FieldStatus::PRESENT` on the wire.
const PRESENT: i32 = 1;

/// A gRPC error as a harness error.
pub(crate) fn status_err(what: &str, s: &tonic::Status) -> BenchError {
    BenchError::other(
        format!("quiver {what}"),
        format!("{:?}: {}", s.code(), s.message()),
    )
}

/// A read of `refs` for the users `ids`.
pub(crate) fn read_request(refs: &[String], ids: &[i64]) -> pb::GetOnlineFeaturesRequest {
    pb::GetOnlineFeaturesRequest {
        features: Some(pb::get_online_features_request::Features::Refs(
            pb::FeatureRefs {
                refs: refs.to_vec(),
            },
        )),
        keys: vec![pb::KeyColumn {
            name: JOIN_KEY.to_owned(),
            values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                values: ids.to_vec(),
            })),
        }],
        full_feature_names: false,
        max_age: None,
    }
}

/// Checks the shape of an answer and that every value is PRESENT: cheap, done on every
/// response.
pub(crate) fn check_shape(
    r: &pb::GetOnlineFeaturesResponse,
    rows: usize,
    columns: usize,
) -> Result<()> {
    if r.row_count as usize != rows || r.columns.len() != columns {
        return Err(BenchError::WrongAnswer(format!(
            "quiver answered {} rows × {} columns for {rows} × {columns}",
            r.row_count,
            r.columns.len()
        )));
    }
    for (j, c) in r.columns.iter().enumerate() {
        if c.statuses.len() != rows || c.statuses.iter().any(|&s| s != PRESENT) {
            return Err(BenchError::WrongAnswer(format!(
                "quiver column {j} ({:?}): not every one of {rows} values is PRESENT",
                r.feature_names.get(j)
            )));
        }
    }
    Ok(())
}

/// Checks every value and event time of an answer against the dataset.
pub(crate) fn check_values(
    r: &pb::GetOnlineFeaturesResponse,
    ids: &[i64],
    want: &Expected<'_>,
) -> Result<()> {
    let (data, features, embedding) = (want.data, want.features, want.embedding);
    check_shape(r, ids.len(), features + usize::from(embedding))?;
    for (row, &id) in ids.iter().enumerate() {
        let want = expected(data, id, features, embedding)?;
        for (j, (ts, v)) in want.iter().enumerate() {
            let col = &r.columns[j];
            let got = col.values.as_ref().and_then(|c| value_at(c, row));
            let got_ts = col.event_timestamps.get(row).copied();
            if got_ts != Some(*ts) || !got.as_ref().is_some_and(|g| g.bit_eq(v)) {
                return Err(BenchError::WrongAnswer(format!(
                    "quiver: user {id}, column {:?}: got {got:?} at {got_ts:?}, expected {v:?} \
                     at {ts}",
                    r.feature_names.get(j)
                )));
            }
        }
    }
    Ok(())
}

/// Row `i` of a packed column as an engine value.
fn value_at(c: &pb::Column, i: usize) -> Option<Value> {
    use pb::column::Data as D;
    Some(match c.data.as_ref()? {
        D::BoolValues(v) => Value::Bool(*v.values.get(i)?),
        D::Int32Values(v) => Value::Int32(*v.values.get(i)?),
        D::Int64Values(v) => Value::Int64(*v.values.get(i)?),
        D::Float32Values(v) => Value::Float32(*v.values.get(i)?),
        D::Float64Values(v) => Value::Float64(*v.values.get(i)?),
        D::StringValues(v) => Value::String(v.values.get(i)?.clone()),
        D::VectorValues(v) => {
            let d = v.dim as usize;
            Value::Vector(v.values.get(i * d..(i + 1) * d)?.to_vec())
        }
        _ => return None,
    })
}

/// A write of the `user_stats` rows of `ids` with their dataset values and event times (so
/// that later reads still match the dataset).
pub(crate) fn write_request(data: &Data, ids: &[i64]) -> Result<pb::WriteFeaturesRequest> {
    use pb::column::Data as D;
    let rows: Vec<_> = ids
        .iter()
        .map(|&id| data.stats_to_write(id))
        .collect::<Result<_>>()?;
    let features = USER_STATS
        .iter()
        .enumerate()
        .map(|(j, f)| {
            // Column `j` of every row as a packed column (a value of another type: the default).
            macro_rules! packed {
                ($kind:ident, $list:ident) => {
                    D::$list(pb::$list {
                        values: (rows.iter())
                            .map(|r| match &r.values[j] {
                                Value::$kind(x) => ToOwned::to_owned(x),
                                _ => Default::default(),
                            })
                            .collect(),
                    })
                };
            }
            use quiver_engine::{ScalarType as S, ValueType as T};
            let data = match f.ty {
                T::Scalar(S::Bool) => packed!(Bool, BoolValues),
                T::Scalar(S::Int32) => packed!(Int32, Int32Values),
                T::Scalar(S::Int64) => packed!(Int64, Int64Values),
                T::Scalar(S::Float32) => packed!(Float32, Float32Values),
                T::Scalar(S::Float64) => packed!(Float64, Float64Values),
                T::Scalar(S::String) => packed!(String, StringValues),
                other => {
                    return Err(BenchError::Schema(format!(
                        "{}: type {other} is not generated",
                        f.name
                    )))
                }
            };
            Ok(pb::FeatureWrite {
                name: f.name.to_owned(),
                values: Some(pb::Column { data: Some(data) }),
                null_bitmap: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(pb::WriteFeaturesRequest {
        view: VIEW.to_owned(),
        keys: vec![pb::KeyColumn {
            name: JOIN_KEY.to_owned(),
            values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                values: ids.to_vec(),
            })),
        }],
        event_timestamps: rows.iter().map(|r| r.event_ts).collect(),
        created_timestamps: Vec::new(),
        features,
    })
}

/// Snapshot files of both views for every user, as a materializer would produce them.
#[derive(Debug)]
pub(crate) struct Snapshots {
    /// `user_stats`.
    pub(crate) stats: PathBuf,
    /// `user_embedding` (absent when the run does not need it).
    pub(crate) embedding: Option<PathBuf>,
    /// Bytes of both files.
    pub(crate) bytes: u64,
    /// Seconds building them took (rows generated and encoded).
    pub(crate) build_seconds: f64,
}

/// Builds the snapshot files under `dir`.
pub(crate) fn build_snapshots(
    dir: &Path,
    registry: &Registry,
    data: &Data,
    with_embedding: bool,
) -> Result<Snapshots> {
    let start = Instant::now();
    let entity = view_entity(registry, VIEW)?;
    let created = now_micros();
    let n = data.entities();
    let stats = dir.join("user_stats.snap");
    let mut b = SnapshotBuilder::create(&stats, registry, VIEW, created)?;
    for i in 0..n {
        b.add(&to_row(&entity, data.stats_row(i))?)?;
    }
    let mut bytes = b.finish()?.file_size;
    let embedding = if with_embedding {
        let path = dir.join("user_embedding.snap");
        let mut b = SnapshotBuilder::create(&path, registry, EMBEDDING_VIEW, created)?;
        for i in 0..n {
            b.add(&embedding_to_row(
                &entity,
                data.stats.user_id(i),
                data.embedding_row(i),
            )?)?;
        }
        bytes += b.finish()?.file_size;
        Some(path)
    } else {
        None
    };
    Ok(Snapshots {
        stats,
        embedding,
        bytes,
        build_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Loads one snapshot file into a running server (`LoadSnapshot`); returns its entity count.
pub(crate) async fn load_snapshot(
    client: &mut NativeClient,
    view: &str,
    path: &Path,
) -> Result<u64> {
    let r = client
        .load_snapshot(pb::LoadSnapshotRequest {
            view: view.to_owned(),
            path: path.display().to_string(),
        })
        .await
        .map_err(|s| status_err("LoadSnapshot", &s))?;
    Ok(r.into_inner().entities)
}

/// Asks the server to checkpoint (snapshot every view, truncate the WAL).
pub(crate) async fn checkpoint(client: &mut NativeClient) -> Result<()> {
    client
        .checkpoint(pb::CheckpointRequest {})
        .await
        .map_err(|s| status_err("Checkpoint", &s))?;
    Ok(())
}

/// Reads `ids` in batches of `batch` and compares every answer with the dataset; returns the
/// number of users checked.
pub(crate) async fn check_users(
    client: &mut NativeClient,
    data: &Data,
    ids: &[i64],
    features: usize,
    embedding: bool,
    batch: usize,
) -> Result<u64> {
    let refs = feature_refs(features, embedding);
    for chunk in ids.chunks(batch.max(1)) {
        let r = client
            .get_online_features(read_request(&refs, chunk))
            .await
            .map_err(|s| status_err("GetOnlineFeatures", &s))?
            .into_inner();
        check_values(
            &r,
            chunk,
            &Expected {
                data,
                features,
                embedding,
            },
        )?;
    }
    Ok(ids.len() as u64)
}

/// `count` user ids spread evenly over the dataset (first and last included).
pub(crate) fn sample_ids(data: &Data, count: u64) -> Vec<i64> {
    let n = data.entities();
    let count = count.min(n).max(1);
    (0..count)
        .map(|k| {
            data.stats.user_id(if count == 1 {
                0
            } else {
                k * (n - 1) / (count - 1)
            })
        })
        .collect()
}

/// Puts `src` at `dst` for a server to load (a hard link when possible: LoadSnapshot moves the
/// file into the data directory, and the original is needed again).
pub(crate) fn stage(src: &Path, dst: &Path) -> Result<()> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).map_err(io(format!(
        "copying {} to {}",
        src.display(),
        dst.display()
    )))
}

/// Reads every user back in batches of `batch`, checking every answer's shape and statuses
/// and every `check_every`-th batch value by value. Returns the time taken.
pub(crate) async fn scan(
    client: &mut NativeClient,
    data: &Data,
    embedding: bool,
    batch: usize,
    check_every: u64,
) -> Result<std::time::Duration> {
    let start = Instant::now();
    let features = USER_STATS.len();
    let refs = feature_refs(features, embedding);
    let n = data.entities();
    let mut ids = Vec::with_capacity(batch);
    let (mut first, mut k) = (0u64, 0u64);
    while first < n {
        let last = (first + batch as u64).min(n);
        ids.clear();
        ids.extend((first..last).map(|i| data.stats.user_id(i)));
        let r = client
            .get_online_features(read_request(&refs, &ids))
            .await
            .map_err(|s| status_err("GetOnlineFeatures", &s))?
            .into_inner();
        if k.is_multiple_of(check_every) {
            check_values(
                &r,
                &ids,
                &Expected {
                    data,
                    features,
                    embedding,
                },
            )?;
        } else {
            check_shape(&r, ids.len(), features + usize::from(embedding))?;
        }
        k += 1;
        first = last;
    }
    Ok(start.elapsed())
}
