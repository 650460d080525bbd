//! `feast.serving.ServingService`: Feast's online serving API, so Feast clients can switch to
//! Quiver unchanged.
//!
//! Feast's response is a message per value (`feast.types.Value`) — the price of wire
//! compatibility. Semantics follow Feast: join key columns first (every row PRESENT), then
//! the requested features in request order, named `feature` or `view__feature`; values that
//! are not PRESENT are sent as an empty `Value`. Timestamps are whole seconds, as in Feast.

use std::sync::Arc;

use quiver_engine::{
    ColumnData, Entity, FeatureColumn, GetResult, KeyBatch, KeyPart, KeyType, ReadOptions,
    Status as EngineStatus,
};
use tonic::{Request, Response, Status};

use crate::error::{status_of, Origin};
use crate::limits::{quote, Api};
use crate::metrics::Rpc;
use crate::proto::feast::serving as fs;
use crate::proto::feast::types as ft;
use crate::service::{check_unique_names, service_features};
use crate::state::AppState;

/// The Feast-compatible service.
#[derive(Debug, Clone)]
pub(crate) struct FeastService {
    pub(crate) state: Arc<AppState>,
}

#[tonic::async_trait]
impl fs::serving_service_server::ServingService for FeastService {
    async fn get_feast_serving_info(
        &self,
        _request: Request<fs::GetFeastServingInfoRequest>,
    ) -> Result<Response<fs::GetFeastServingInfoResponse>, Status> {
        let call = self.state.begin(Rpc::FeastGetServingInfo);
        call.finish(Ok(Response::new(fs::GetFeastServingInfoResponse {
            version: format!("quiver-{}", env!("CARGO_PKG_VERSION")),
        })))
    }

    async fn get_online_features(
        &self,
        request: Request<fs::GetOnlineFeaturesRequest>,
    ) -> Result<Response<fs::GetOnlineFeaturesResponse>, Status> {
        let call = self.state.begin(Rpc::FeastGetOnlineFeatures);
        call.finish(self.get(request.into_inner()).map(Response::new))
    }
}

fn empty() -> ft::Value {
    ft::Value { val: None }
}

impl FeastService {
    fn get(
        &self,
        req: fs::GetOnlineFeaturesRequest,
    ) -> Result<fs::GetOnlineFeaturesResponse, Status> {
        let db = self.state.db()?;
        let registry = db.registry();
        let refs: Vec<String> = match req.kind {
            Some(fs::get_online_features_request::Kind::Features(list)) => list.val,
            Some(fs::get_online_features_request::Kind::FeatureService(name)) => {
                service_features(&registry, &name)?
            }
            None => {
                return Err(Status::invalid_argument(
                    "kind: give features or a feature_service",
                ))
            }
        };
        if refs.is_empty() {
            return Err(Status::invalid_argument("features: no features requested"));
        }
        let limits = &self.state.read_limits;
        limits.check_refs(&refs)?;
        if req.entities.is_empty() {
            return Err(Status::invalid_argument("entities: no entity columns"));
        }
        let rows = req.entities.values().next().map_or(0, |c| c.val.len());
        for (name, col) in &req.entities {
            if col.val.len() != rows {
                return Err(Status::invalid_argument(format!(
                    "entities: column {name:?} has {} values, others have {rows}",
                    col.val.len()
                )));
            }
        }
        if rows == 0 {
            return Err(Status::invalid_argument(
                "entities: no entity rows requested",
            ));
        }
        let max = self.state.config.max_entities_per_request;
        if rows > max {
            return Err(Status::invalid_argument(format!(
                "entities: {rows} rows exceed the server's limit of {max} per request"
            )));
        }

        // Resolve every reference, then group by entity: features of different entities are
        // read with different keys built from the same request columns.
        let mut resolved = Vec::with_capacity(refs.len());
        for r in &refs {
            resolved.push(
                registry
                    .resolve(r)
                    .map_err(|e| status_of(&e.into(), Origin::Server))?,
            );
        }
        let types: Vec<_> = resolved
            .iter()
            .map(|fr| registry.views()[fr.view].features[fr.feature].ty)
            .collect();
        let mut budget = limits.budget(rows, &types, Api::Feast)?;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, fr) in resolved.iter().enumerate() {
            let entity = &registry.views()[fr.view].entity;
            match groups.iter_mut().find(|g| &g.0 == entity) {
                Some(g) => g.1.push(i),
                None => groups.push((entity.clone(), vec![i])),
            }
        }
        let mut feature_names = vec![String::new(); refs.len()];
        let mut feature_vectors: Vec<Option<fs::get_online_features_response::FeatureVector>> =
            (0..refs.len()).map(|_| None).collect();
        let mut join_keys_used: Vec<String> = Vec::new();
        for (entity_name, _) in &groups {
            let entity = registry
                .entity(entity_name)
                .ok_or_else(|| Status::internal(format!("entity {entity_name:?} missing")))?;
            for jk in &entity.join_keys {
                if !join_keys_used.contains(&jk.name) {
                    join_keys_used.push(jk.name.clone());
                }
            }
        }
        // Like the native API: a column no requested feature is keyed by is a mistake (a
        // misspelt join key would otherwise be ignored).
        if let Some(extra) = req.entities.keys().find(|k| !join_keys_used.contains(k)) {
            return Err(Status::invalid_argument(format!(
                "entities: {} is not a join key of the requested features (they need {})",
                quote(extra),
                join_keys_used.join(", ")
            )));
        }
        for (entity_name, idxs) in &groups {
            let entity = registry
                .entity(entity_name)
                .ok_or_else(|| Status::internal(format!("entity {entity_name:?} missing")))?;
            let keys = keys_from_feast(entity, &req.entities, rows)?;
            let group_refs: Vec<&str> = idxs.iter().map(|&i| refs[i].as_str()).collect();
            let sel = db
                .select(&group_refs)
                .map_err(|e| status_of(&e, Origin::Server))?;
            let names = sel.names(req.full_feature_names);
            let mut out = GetResult::new();
            let opts = ReadOptions {
                max_variable_bytes: Some(budget),
                ..ReadOptions::default()
            };
            db.get(&sel, &keys, &opts, &mut out).map_err(|e| {
                limits
                    .gathered(e)
                    .unwrap_or_else(|e| status_of(&e, Origin::Server))
            })?;
            let gathered: usize = out
                .columns
                .iter()
                .filter_map(|c| c.values.variable_bytes())
                .sum();
            budget = budget.saturating_sub(gathered);
            for ((col, &i), name) in out.columns.iter().zip(idxs).zip(names) {
                self.state.metrics.count_statuses(&col.statuses);
                feature_names[i] = name;
                feature_vectors[i] = Some(feature_vector(col));
            }
        }
        if !req.full_feature_names {
            check_unique_names(&feature_names)?;
        }

        // Join key columns first, in the registry's declared order, every row PRESENT.
        let mut names = Vec::with_capacity(join_keys_used.len() + refs.len());
        let mut results = Vec::with_capacity(join_keys_used.len() + refs.len());
        for jk in &join_keys_used {
            if let Some(col) = req.entities.get(jk) {
                names.push(jk.clone());
                results.push(fs::get_online_features_response::FeatureVector {
                    values: col.val.clone(),
                    statuses: vec![fs::FieldStatus::Present as i32; rows],
                    event_timestamps: vec![prost_types::Timestamp::default(); rows],
                });
            }
        }
        names.extend(feature_names);
        results.extend(feature_vectors.into_iter().flatten());
        Ok(fs::GetOnlineFeaturesResponse {
            metadata: Some(fs::GetOnlineFeaturesResponseMetadata {
                feature_names: Some(fs::FeatureList { val: names }),
            }),
            results,
            status: true,
        })
    }
}

/// Builds keys of `entity` from Feast's entity columns (int64 keys also accept int32 values).
pub(crate) fn keys_from_feast(
    entity: &Entity,
    cols: &std::collections::HashMap<String, ft::RepeatedValue>,
    rows: usize,
) -> Result<KeyBatch, Status> {
    let mut ordered = Vec::with_capacity(entity.join_keys.len());
    for jk in &entity.join_keys {
        let col = cols.get(&jk.name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "entities: missing join key column {:?} of entity {:?}",
                jk.name, entity.name
            ))
        })?;
        ordered.push((jk, col));
    }
    let mut keys = KeyBatch::with_capacity(rows, 9);
    let mut parts: Vec<KeyPart<'_>> = Vec::with_capacity(ordered.len());
    for i in 0..rows {
        parts.clear();
        for (jk, col) in &ordered {
            use ft::value::Val;
            let part = match (jk.ty, &col.val[i].val) {
                (KeyType::Int64, Some(Val::Int64Val(v))) => KeyPart::Int64(*v),
                (KeyType::Int64, Some(Val::Int32Val(v))) => KeyPart::Int64(i64::from(*v)),
                (KeyType::String, Some(Val::StringVal(s))) => KeyPart::String(s),
                (ty, other) => {
                    return Err(Status::invalid_argument(format!(
                        "entities[{:?}][{i}]: join key is {}, got {}",
                        jk.name,
                        ty.name(),
                        match other {
                            None => "an empty value",
                            Some(_) => "a value of another type",
                        }
                    )))
                }
            };
            parts.push(part);
        }
        keys.push(entity, &parts)
            .map_err(|e| Status::invalid_argument(format!("entities row {i}: {e}")))?;
    }
    Ok(keys)
}

fn feature_vector(col: &FeatureColumn) -> fs::get_online_features_response::FeatureVector {
    let n = col.statuses.len();
    let mut values = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut event_timestamps = Vec::with_capacity(n);
    for i in 0..n {
        let st = col.statuses[i];
        statuses.push(match st {
            EngineStatus::Present => fs::FieldStatus::Present,
            EngineStatus::NullValue => fs::FieldStatus::NullValue,
            EngineStatus::NotFound => fs::FieldStatus::NotFound,
            EngineStatus::OutsideMaxAge => fs::FieldStatus::OutsideMaxAge,
            EngineStatus::Invalid => fs::FieldStatus::Invalid,
        } as i32);
        values.push(if st == EngineStatus::Present {
            value_at(&col.values, i)
        } else {
            empty()
        });
        event_timestamps.push(timestamp(col.event_ts[i]));
    }
    fs::get_online_features_response::FeatureVector {
        values,
        statuses,
        event_timestamps,
    }
}

/// `google.protobuf.Timestamp` is only valid from 0001-01-01 to 9999-12-31 (inclusive); a
/// stored time outside that range is sent as the nearest valid one.
const TIMESTAMP_MICROS: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000_000..=253_402_300_799_999_999;

fn timestamp(micros: i64) -> prost_types::Timestamp {
    let ts = micros.clamp(*TIMESTAMP_MICROS.start(), *TIMESTAMP_MICROS.end());
    prost_types::Timestamp {
        seconds: ts.div_euclid(1_000_000),
        nanos: (ts.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn secs(micros: i64) -> i64 {
    micros.div_euclid(1_000_000)
}

fn value_at(col: &ColumnData, i: usize) -> ft::Value {
    use ft::value::Val;
    let val = match col {
        ColumnData::Bool(v) => Val::BoolVal(v[i]),
        ColumnData::Int32(v) => Val::Int32Val(v[i]),
        ColumnData::Int64(v) => Val::Int64Val(v[i]),
        ColumnData::Float32(v) => Val::FloatVal(v[i]),
        ColumnData::Float64(v) => Val::DoubleVal(v[i]),
        ColumnData::Timestamp(v) => Val::UnixTimestampVal(secs(v[i])),
        ColumnData::String(v) => Val::StringVal(String::from_utf8_lossy(v.get(i)).into_owned()),
        ColumnData::Bytes(v) => Val::BytesVal(v.get(i).to_vec()),
        ColumnData::Vector { dim, data } => {
            let d = *dim as usize;
            Val::FloatListVal(ft::FloatList {
                val: data[i * d..(i + 1) * d].to_vec(),
            })
        }
        ColumnData::List { spans, items } => {
            let (s, l) = spans[i];
            let r = s as usize..(s + l) as usize;
            match items.as_ref() {
                ColumnData::Bool(v) => Val::BoolListVal(ft::BoolList { val: v[r].to_vec() }),
                ColumnData::Int32(v) => Val::Int32ListVal(ft::Int32List { val: v[r].to_vec() }),
                ColumnData::Int64(v) => Val::Int64ListVal(ft::Int64List { val: v[r].to_vec() }),
                ColumnData::Float32(v) => Val::FloatListVal(ft::FloatList { val: v[r].to_vec() }),
                ColumnData::Float64(v) => Val::DoubleListVal(ft::DoubleList { val: v[r].to_vec() }),
                ColumnData::Timestamp(v) => Val::UnixTimestampListVal(ft::Int64List {
                    val: v[r].iter().map(|t| secs(*t)).collect(),
                }),
                ColumnData::String(v) => Val::StringListVal(ft::StringList {
                    val: r
                        .map(|j| String::from_utf8_lossy(v.get(j)).into_owned())
                        .collect(),
                }),
                ColumnData::Bytes(v) => Val::BytesListVal(ft::BytesList {
                    val: r.map(|j| v.get(j).to_vec()).collect(),
                }),
                ColumnData::Vector { .. } | ColumnData::List { .. } => return empty(),
            }
        }
    };
    ft::Value { val: Some(val) }
}
