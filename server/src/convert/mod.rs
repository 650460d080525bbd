//! Native protobuf messages ⇄ engine keys, rows, result columns and registries.
//!
//! Requests decode straight into a [`KeyBatch`] and engine rows; responses move the engine's
//! packed column vectors into the protobuf messages without a message per value.
//!
//! - `rows`: write batches ⇄ engine rows, both directions (the server decodes batches, the
//!   materializer builds them).
//! - `columns`: engine result columns → protobuf columns.
//! - `request`: the GetOnlineFeatures request as decoded, string keys as received bytes.
//! - `wire`: engine result columns → the encoded GetOnlineFeaturesResponse, without messages.
//! - here: key columns → encoded keys, value types and the registry → protobuf.

mod columns;
mod request;
mod rows;
mod wire;

use quiver_engine::{Entity, KeyBatch, KeyPart, KeyType, Registry, ScalarType, ValueType};
use tonic::Status;

use crate::limits::quote;
use crate::proto::quiver::v1 as pb;
use pb::key_column::Values as KeyValues;

pub(crate) use columns::column_to_proto;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use request::check_decoders_agree;
pub(crate) use request::OnlineRequest;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use rows::value_bytes;
pub(crate) use rows::{rows_from_write, writes_from_history};
pub(crate) use wire::{pooled_result, OnlineAnswer};

/// A request's key column, from whichever message carries it: the generated `KeyColumn`
/// (writes, the Feast path's conversions) or the read path's [`request::KeyColumnIn`].
pub(crate) trait KeyColumnSource {
    /// How one string key arrives.
    type Str: KeyString;
    fn name(&self) -> &str;
    /// The values, `None` when the column has none.
    fn values(&self) -> Option<KeyValuesRef<'_, Self::Str>>;
}

/// A key column's values.
pub(crate) enum KeyValuesRef<'a, S> {
    Int64(&'a [i64]),
    String(&'a [S]),
}

/// One string key as received.
pub(crate) trait KeyString {
    fn key_str(&self) -> Result<&str, std::str::Utf8Error>;
}

impl KeyString for String {
    fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        Ok(self)
    }
}

impl KeyString for bytes::Bytes {
    fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(self)
    }
}

impl KeyColumnSource for pb::KeyColumn {
    type Str = String;

    fn name(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Option<KeyValuesRef<'_, String>> {
        match &self.values {
            Some(KeyValues::Int64Values(v)) => Some(KeyValuesRef::Int64(&v.values)),
            Some(KeyValues::StringValues(v)) => Some(KeyValuesRef::String(&v.values)),
            None => None,
        }
    }
}

impl KeyColumnSource for request::KeyColumnIn {
    type Str = bytes::Bytes;

    fn name(&self) -> &str {
        &self.name
    }

    fn values(&self) -> Option<KeyValuesRef<'_, bytes::Bytes>> {
        match &self.values {
            Some(request::KeyValuesIn::Int64Values(v)) => Some(KeyValuesRef::Int64(v)),
            Some(request::KeyValuesIn::StringValues(v)) => Some(KeyValuesRef::String(v)),
            None => None,
        }
    }
}

/// Turns key columns into encoded keys of `entity`, checking names, types and lengths.
/// Returns the row count.
pub(crate) fn keys_from_columns<C: KeyColumnSource>(
    entity: &Entity,
    cols: &[C],
    max_rows: usize,
    out: &mut KeyBatch,
) -> Result<usize, Status> {
    out.clear();
    if cols.is_empty() {
        return Err(Status::invalid_argument(format!(
            "keys: no key columns; entity {:?} needs {}",
            entity.name,
            join_key_names(entity)
        )));
    }
    let mut ordered: Vec<&C> = Vec::with_capacity(entity.join_keys.len());
    for jk in &entity.join_keys {
        let mut found = cols.iter().filter(|c| c.name() == jk.name);
        let col = found.next().ok_or_else(|| {
            Status::invalid_argument(format!(
                "keys: missing join key column {:?} of entity {:?} (it needs {})",
                jk.name,
                entity.name,
                join_key_names(entity)
            ))
        })?;
        if found.next().is_some() {
            return Err(Status::invalid_argument(format!(
                "keys: join key column {:?} given twice",
                jk.name
            )));
        }
        ordered.push(col);
    }
    if let Some(extra) = cols
        .iter()
        .find(|c| !entity.join_keys.iter().any(|jk| jk.name == c.name()))
    {
        return Err(Status::invalid_argument(format!(
            "keys: {} is not a join key of entity {:?} (it needs {})",
            quote(extra.name()),
            entity.name,
            join_key_names(entity)
        )));
    }
    let mut rows = None;
    for (jk, col) in entity.join_keys.iter().zip(&ordered) {
        let n = match (col.values(), jk.ty) {
            (Some(KeyValuesRef::Int64(v)), KeyType::Int64) => v.len(),
            (Some(KeyValuesRef::String(v)), KeyType::String) => v.len(),
            (None, _) => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key column {:?} has no values",
                    jk.name
                )))
            }
            (Some(_), ty) => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key {:?} of entity {:?} is {}; send it as {}",
                    jk.name,
                    entity.name,
                    ty.name(),
                    match ty {
                        KeyType::Int64 => "int64_values",
                        KeyType::String => "string_values",
                    }
                )))
            }
        };
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key column {:?} has {n} values but {:?} has {r}",
                    jk.name, entity.join_keys[0].name
                )))
            }
            Some(_) => {}
        }
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(Status::invalid_argument("keys: no entity rows requested"));
    }
    if rows > max_rows {
        return Err(Status::invalid_argument(format!(
            "keys: {rows} entity rows exceed the server's limit of {max_rows} per request"
        )));
    }
    // An int64 key part encodes to at most 10 bytes; strings grow the batch as they come.
    out.reserve(rows, 10 * ordered.len());
    let mut parts: Vec<KeyPart<'_>> = Vec::with_capacity(ordered.len());
    let values: Vec<KeyValuesRef<'_, C::Str>> = ordered
        .iter()
        .map(|c| c.values())
        .collect::<Option<_>>()
        .ok_or_else(|| Status::invalid_argument("keys: empty key column"))?;
    for i in 0..rows {
        parts.clear();
        for (col, v) in entity.join_keys.iter().zip(&values) {
            parts.push(match v {
                KeyValuesRef::Int64(v) => KeyPart::Int64(v[i]),
                KeyValuesRef::String(v) => KeyPart::String(v[i].key_str().map_err(|_| {
                    Status::invalid_argument(format!(
                        "keys: row {i}: join key {:?} is not valid UTF-8",
                        col.name
                    ))
                })?),
            });
        }
        out.push(entity, &parts)
            .map_err(|e| Status::invalid_argument(format!("keys: row {i}: {e}")))?;
    }
    Ok(rows)
}

fn join_key_names(entity: &Entity) -> String {
    let names: Vec<String> = entity
        .join_keys
        .iter()
        .map(|k| format!("{} ({})", k.name, k.ty.name()))
        .collect();
    names.join(", ")
}

/// The proto form of a value type.
pub(crate) fn type_to_proto(ty: ValueType) -> pb::ValueType {
    use pb::value_type::Kind;
    let scalar = |s: ScalarType| -> i32 {
        (match s {
            ScalarType::Bool => pb::ScalarType::Bool,
            ScalarType::Int32 => pb::ScalarType::Int32,
            ScalarType::Int64 => pb::ScalarType::Int64,
            ScalarType::Float32 => pb::ScalarType::Float32,
            ScalarType::Float64 => pb::ScalarType::Float64,
            ScalarType::Timestamp => pb::ScalarType::Timestamp,
            ScalarType::String => pb::ScalarType::String,
            ScalarType::Bytes => pb::ScalarType::Bytes,
        }) as i32
    };
    pb::ValueType {
        kind: Some(match ty {
            ValueType::Scalar(s) => Kind::Scalar(scalar(s)),
            ValueType::List(s) => Kind::List(scalar(s)),
            ValueType::Vector { dim } => Kind::VectorDim(dim),
        }),
    }
}

/// The typed registry for GetRegistry.
pub(crate) fn registry_to_proto(reg: &Registry, version: u64) -> pb::GetRegistryResponse {
    pb::GetRegistryResponse {
        version,
        toml: reg.to_toml(),
        project: reg.project().to_owned(),
        entities: reg
            .entities()
            .iter()
            .map(|e| pb::EntitySchema {
                name: e.name.clone(),
                join_keys: e
                    .join_keys
                    .iter()
                    .map(|k| pb::JoinKeySchema {
                        name: k.name.clone(),
                        r#type: match k.ty {
                            KeyType::Int64 => pb::KeyType::Int64 as i32,
                            KeyType::String => pb::KeyType::String as i32,
                        },
                    })
                    .collect(),
                description: e.description.clone(),
            })
            .collect(),
        views: reg
            .views()
            .iter()
            .map(|v| pb::ViewSchema {
                name: v.name.clone(),
                entity: v.entity.clone(),
                ttl_seconds: v.ttl_secs,
                features: v
                    .features
                    .iter()
                    .enumerate()
                    .map(|(i, f)| pb::FeatureSchema {
                        name: f.name.clone(),
                        r#type: Some(type_to_proto(f.ty)),
                        ttl_seconds: v.feature_ttl_secs(i),
                        description: f.description.clone(),
                    })
                    .collect(),
                description: v.description.clone(),
                owner: v.owner.clone(),
                tags: v.tags.clone().into_iter().collect(),
            })
            .collect(),
        feature_services: reg
            .services()
            .iter()
            .map(|s| pb::FeatureServiceSchema {
                name: s.name.clone(),
                features: s.features.clone(),
                description: s.description.clone(),
            })
            .collect(),
    }
}
