//! Entry points for the `requests` fuzz target in `fuzz/` (not a stable API).
//!
//! Requests are checked the way the handlers check them, up to where the engine would be
//! called: feature references against the read limits and the registry, key columns into
//! encoded keys, write columns into rows, Feast entity columns into keys. Inputs come two
//! ways: raw bytes decoded by prost (what a hostile client sends), and well-formed messages
//! built from the input by [`Source`] with names drawn from the registry, so most inputs get
//! past the protobuf decoder and the name lookups into the deep validation. Whatever is
//! accepted must be consistent: one row per key, keys that decode to the values sent, values
//! of the feature's type, sizes within the limits.

use std::collections::HashMap;

use quiver_engine::fuzzing::Source;
use quiver_engine::{
    decode_key, encode_key, Entity, KeyBatch, KeyPart, KeyType, OwnedKeyPart, Registry, ScalarType,
    Value, ValueType,
};

use crate::config::ServerConfig;
use crate::convert::{check_decoders_agree, keys_from_columns, rows_from_write, value_bytes};
use crate::feast::keys_from_feast;
use crate::limits::{Api, ReadLimits, WriteLimits};
use crate::proto::feast::serving as fs;
use crate::proto::feast::types as ft;
use crate::proto::quiver::v1 as pb;
use crate::service::max_age_micros;
use pb::column::Data;
use pb::key_column::Values as KeyValues;

/// A registry with every value type and key shape: int64, string and composite keys,
/// every scalar, every list, vectors, and a bare feature name shared by two views.
const REGISTRY: &str = include_str!("../testdata/every-type.toml");

/// The server clock the write checks run against (2025-06-15), fixed so that replays of a
/// regression input decide the same way.
const NOW: i64 = 1_750_000_000_000_000;

/// The request checks against [`REGISTRY`], with limits small enough that inputs reach them.
#[derive(Debug)]
pub struct RequestTarget {
    registry: Registry,
    config: ServerConfig,
    read_limits: ReadLimits,
    write_limits: WriteLimits,
    /// Every `view:feature` of the registry, for building references that resolve.
    refs: Vec<String>,
}

/// How far a request got: the fuzz target ignores it, the tests use it to show that the
/// structure-aware inputs reach acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reached {
    /// Refused somewhere (every refusal is a `Status`, never a panic).
    Refused,
    /// A native read's keys and budget were accepted.
    NativeGet,
    /// A native write's rows were accepted.
    Write,
    /// A Feast read's keys and budget were accepted.
    FeastGet,
}

impl Default for RequestTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestTarget {
    /// The target over [`REGISTRY`].
    pub fn new() -> Self {
        let registry = match Registry::from_toml(REGISTRY) {
            Ok(r) => r,
            Err(e) => panic!("the fuzz registry is invalid: {e}"),
        };
        let config = ServerConfig {
            max_entities_per_request: 64,
            max_features_per_request: 8,
            max_values_per_request: 256,
            max_response_bytes: 16 << 10,
            max_value_bytes: 64,
            ..ServerConfig::default()
        };
        let refs = registry
            .views()
            .iter()
            .flat_map(|v| {
                v.features
                    .iter()
                    .map(move |f| format!("{}:{}", v.name, f.name))
            })
            .collect();
        Self {
            read_limits: ReadLimits::new(&config),
            write_limits: WriteLimits::new(&config),
            registry,
            config,
            refs,
        }
    }

    /// One fuzz input: the first byte picks the request kind and whether the rest is raw
    /// protobuf or choices for a well-formed message.
    pub fn run(&self, data: &[u8]) -> Reached {
        use prost::Message;
        let Some((&mode, rest)) = data.split_first() else {
            return Reached::Refused;
        };
        let mut src = Source::new(rest);
        match mode % 6 {
            0 => {
                // The server decodes reads with its own request type: it must agree with the
                // generated one on every input.
                check_decoders_agree(rest);
                pb::GetOnlineFeaturesRequest::decode(rest)
                    .map_or(Reached::Refused, |r| self.native_get(&r))
            }
            1 => pb::WriteFeaturesRequest::decode(rest)
                .map_or(Reached::Refused, |r| self.write(&r, NOW)),
            2 => fs::GetOnlineFeaturesRequest::decode(rest)
                .map_or(Reached::Refused, |r| self.feast_get(&r)),
            3 => self.native_get(&self.build_get(&mut src)),
            4 => {
                let req = self.build_write(&mut src);
                self.check_time(src.int());
                self.write(&req, NOW)
            }
            _ => self.feast_get(&self.build_feast(&mut src)),
        }
    }

    /// Reference checks shared by both read APIs; the resolved features' entity and types.
    fn resolve(&self, refs: &[String]) -> Option<(&Entity, Vec<ValueType>)> {
        self.read_limits.check_refs(refs).ok()?;
        assert!(refs.len() <= self.config.max_features_per_request);
        for (i, r) in refs.iter().enumerate() {
            assert!(r.contains(':'), "accepted reference {r:?} has no view");
            assert!(!refs[..i].contains(r), "accepted reference {r:?} twice");
        }
        let mut entity: Option<&Entity> = None;
        let mut types = Vec::with_capacity(refs.len());
        for r in refs {
            let fr = self.registry.resolve(r).ok()?;
            let view = &self.registry.views()[fr.view];
            let Some(e) = self.registry.view_entity(view) else {
                panic!("view {:?} of a valid registry has no entity", view.name);
            };
            if entity.is_some_and(|x| x.name != e.name) {
                return None;
            }
            entity = Some(e);
            types.push(view.features[fr.feature].ty);
        }
        Some((entity?, types))
    }

    /// The budget checks: within the configured bounds, and Feast (a message per value)
    /// never allowed more than the native API for the same read.
    fn check_budget(&self, rows: usize, types: &[ValueType], api: Api) -> bool {
        let native = self.read_limits.budget(rows, types, Api::Native);
        let feast = self.read_limits.budget(rows, types, Api::Feast);
        if let Ok(f) = &feast {
            assert!(
                native.as_ref().is_ok_and(|n| n >= f),
                "Feast allowed more than native"
            );
        }
        let ours = if api == Api::Native { native } else { feast };
        let Ok(b) = ours else { return false };
        assert!(b <= self.config.max_response_bytes);
        assert!(rows * types.len() <= self.config.max_values_per_request);
        true
    }

    fn native_get(&self, req: &pb::GetOnlineFeaturesRequest) -> Reached {
        use pb::get_online_features_request::Features;
        let refs = match &req.features {
            Some(Features::Refs(r)) => r.refs.clone(),
            Some(Features::FeatureService(name)) => match self.registry.service(name) {
                Some(s) => s.features.clone(),
                None => return Reached::Refused,
            },
            None => return Reached::Refused,
        };
        if refs.is_empty() {
            return Reached::Refused;
        }
        let Some((entity, types)) = self.resolve(&refs) else {
            return Reached::Refused;
        };
        let max = self.config.max_entities_per_request;
        let mut keys = KeyBatch::new();
        let Ok(rows) = keys_from_columns(entity, &req.keys, max, &mut keys) else {
            return Reached::Refused;
        };
        check_keys(entity, &req.keys, rows, max, &keys);
        if let Ok(Some(m)) = max_age_micros(req.max_age.as_ref()) {
            assert!(m >= 0, "a negative max_age was accepted");
        }
        if self.check_budget(rows, &types, Api::Native) {
            Reached::NativeGet
        } else {
            Reached::Refused
        }
    }

    fn write(&self, req: &pb::WriteFeaturesRequest, now: i64) -> Reached {
        let Some(view) = self.registry.view(&req.view) else {
            return Reached::Refused;
        };
        let Some(entity) = self.registry.view_entity(view) else {
            panic!("view {:?} of a valid registry has no entity", view.name);
        };
        let Ok(rows) = rows_from_write(view, entity, req, &self.write_limits, now) else {
            return Reached::Refused;
        };
        let max = self.write_limits.max_rows;
        let mut keys = KeyBatch::new();
        let n = match keys_from_columns(entity, &req.keys, max, &mut keys) {
            Ok(n) => n,
            Err(e) => panic!("rows accepted for keys that are refused: {e}"),
        };
        check_keys(entity, &req.keys, n, max, &keys);
        assert_eq!(rows.len(), n, "rows for {n} keys");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.key, keys.get(i), "row {i} has another row's key");
            assert_eq!(row.event_ts, req.event_timestamps[i]);
            assert!(row.event_ts <= now + self.config.max_event_time_skew_secs as i64 * 1_000_000);
            assert_eq!(row.created_ts, req.created_timestamps.get(i).copied());
            assert_eq!(row.values.len(), req.features.len());
            for ((fi, v), fw) in row.values.iter().zip(&req.features) {
                let f = &view.features[*fi];
                assert_eq!(f.name, fw.name, "a value went to another feature");
                assert!(v.fits(f.ty), "row {i}: a {} value for {}", v.kind(), f.ty);
                let null = fw
                    .null_bitmap
                    .get(i / 8)
                    .is_some_and(|b| b & (1 << (i % 8)) != 0);
                assert_eq!(
                    null,
                    matches!(v, Value::Null),
                    "row {i}: null bitmap not applied"
                );
                assert!(value_bytes(v) <= self.write_limits.max_value_bytes);
            }
        }
        Reached::Write
    }

    /// A time is refused exactly when it is further ahead of the clock than the skew allows.
    fn check_time(&self, micros: i64) {
        let skew = self.config.max_event_time_skew_secs as i64 * 1_000_000;
        let ok = self.write_limits.check_time("t", micros, NOW).is_ok();
        assert_eq!(
            ok,
            micros <= NOW + skew,
            "check_time({micros}) decided wrongly"
        );
    }

    /// What the Feast handler checks before reading, in its order.
    fn feast_get(&self, req: &fs::GetOnlineFeaturesRequest) -> Reached {
        use fs::get_online_features_request::Kind;
        let refs = match &req.kind {
            Some(Kind::Features(list)) => list.val.clone(),
            Some(Kind::FeatureService(name)) => match self.registry.service(name) {
                Some(s) => s.features.clone(),
                None => return Reached::Refused,
            },
            None => return Reached::Refused,
        };
        if refs.is_empty() || self.read_limits.check_refs(&refs).is_err() {
            return Reached::Refused;
        }
        let rows = req.entities.values().next().map_or(0, |c| c.val.len());
        if rows == 0
            || rows > self.config.max_entities_per_request
            || req.entities.values().any(|c| c.val.len() != rows)
        {
            return Reached::Refused;
        }
        // Feast reads features of several entities in one request, grouped by entity.
        let mut entities: Vec<&Entity> = Vec::new();
        let mut types = Vec::with_capacity(refs.len());
        for r in &refs {
            let Ok(fr) = self.registry.resolve(r) else {
                return Reached::Refused;
            };
            let view = &self.registry.views()[fr.view];
            let Some(e) = self.registry.view_entity(view) else {
                panic!("view {:?} of a valid registry has no entity", view.name);
            };
            if !entities.iter().any(|x| x.name == e.name) {
                entities.push(e);
            }
            types.push(view.features[fr.feature].ty);
        }
        if !self.check_budget(rows, &types, Api::Feast) {
            return Reached::Refused;
        }
        let used = |k: &String| {
            entities
                .iter()
                .any(|e| e.join_keys.iter().any(|j| &j.name == k))
        };
        if !req.entities.keys().all(used) {
            return Reached::Refused;
        }
        let max = self.config.max_entities_per_request;
        for entity in entities {
            let feast = keys_from_feast(entity, &req.entities, rows);
            // The same rows sent as native key columns must give the same keys.
            let mut native = KeyBatch::new();
            let native_ok = native_columns(entity, &req.entities)
                .is_some_and(|cols| keys_from_columns(entity, &cols, max, &mut native).is_ok());
            match feast {
                Ok(keys) => {
                    assert!(native_ok, "Feast keys accepted that native refuses");
                    assert_eq!(keys.len(), rows);
                    for i in 0..rows {
                        assert_eq!(keys.get(i), native.get(i), "Feast and native keys differ");
                        assert!(decode_key(entity, keys.get(i)).is_some());
                    }
                }
                Err(_) => {
                    assert!(!native_ok, "Feast refused keys that native accepts");
                    return Reached::Refused;
                }
            }
        }
        Reached::FeastGet
    }

    fn build_get(&self, src: &mut Source<'_>) -> pb::GetOnlineFeaturesRequest {
        use pb::get_online_features_request::Features;
        let refs = self.build_refs(src);
        let features = match src.byte() {
            0..=15 => None,
            16..=47 => Some(Features::FeatureService(self.service_name(src))),
            _ => Some(Features::Refs(pb::FeatureRefs { refs: refs.clone() })),
        };
        let entity = self.entity_of(refs.first(), src);
        let rows = build_rows(src);
        pb::GetOnlineFeaturesRequest {
            features,
            keys: build_keys(src, entity, rows),
            full_feature_names: src.flag(),
            max_age: src.rarely().then(|| prost_types::Duration {
                seconds: src.int(),
                nanos: src.int() as i32,
            }),
        }
    }

    fn build_write(&self, src: &mut Source<'_>) -> pb::WriteFeaturesRequest {
        let names: Vec<&str> = self
            .registry
            .views()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        let view_name = src.word(&names);
        let view = self.registry.view(&view_name);
        let entity = view
            .and_then(|v| self.registry.view_entity(v))
            .or_else(|| self.registry.entities().first());
        let rows = build_rows(src);
        let keys = entity.map_or_else(Vec::new, |e| build_keys(src, e, rows));
        let times = |src: &mut Source<'_>| -> Vec<i64> {
            let n = off_by_one(src, rows);
            (0..n)
                .map(|_| {
                    if src.rarely() {
                        src.int()
                    } else {
                        NOW - src.below(1 << 16) as i64 * 1_000_000
                    }
                })
                .collect()
        };
        let event_timestamps = times(src);
        let created_timestamps = if src.flag() { times(src) } else { Vec::new() };
        let feature_names: Vec<&str> = view
            .map(|v| v.features.iter().map(|f| f.name.as_str()).collect())
            .unwrap_or_default();
        let features = (0..=src.below(3))
            .map(|_| {
                let name = src.word(&feature_names);
                let ty = view
                    .and_then(|v| v.feature_index(&name).map(|i| v.features[i].ty))
                    .filter(|_| !src.rarely())
                    .unwrap_or_else(|| any_type(src));
                let n = off_by_one(src, rows);
                let null_bitmap = if src.flag() {
                    let mut b = src.bytes(n.div_ceil(8)).to_vec();
                    b.resize(n.div_ceil(8), 0);
                    // Bits past the last row are refused; keep them clear most of the time.
                    if let Some(last) = b
                        .last_mut()
                        .filter(|_| !n.is_multiple_of(8) && !src.rarely())
                    {
                        *last &= (1u8 << (n % 8)) - 1;
                    }
                    b
                } else {
                    Vec::new()
                };
                pb::FeatureWrite {
                    name,
                    values: Some(pb::Column {
                        data: Some(build_column(src, ty, n)),
                    }),
                    null_bitmap,
                }
            })
            .collect();
        pb::WriteFeaturesRequest {
            view: view_name,
            keys,
            event_timestamps,
            created_timestamps,
            features,
        }
    }

    fn build_feast(&self, src: &mut Source<'_>) -> fs::GetOnlineFeaturesRequest {
        use fs::get_online_features_request::Kind;
        let refs = self.build_refs(src);
        let kind = match src.byte() {
            0..=15 => None,
            16..=47 => Some(Kind::FeatureService(self.service_name(src))),
            _ => Some(Kind::Features(fs::FeatureList { val: refs.clone() })),
        };
        let rows = build_rows(src);
        let mut entities: HashMap<String, ft::RepeatedValue> = HashMap::new();
        for r in refs.iter().take(2) {
            let entity = self.entity_of(Some(r), src);
            for jk in &entity.join_keys {
                let n = off_by_one(src, rows);
                let val = (0..n).map(|_| feast_key_value(src, jk.ty)).collect();
                entities.insert(jk.name.clone(), ft::RepeatedValue { val });
            }
        }
        if src.rarely() {
            let val = (0..rows)
                .map(|_| feast_key_value(src, KeyType::Int64))
                .collect();
            entities.insert(src.text(12), ft::RepeatedValue { val });
        }
        fs::GetOnlineFeaturesRequest {
            kind,
            entities,
            full_feature_names: src.flag(),
            request_context: HashMap::new(),
        }
    }

    /// Up to five references, mostly ones the registry resolves.
    fn build_refs(&self, src: &mut Source<'_>) -> Vec<String> {
        let known: Vec<&str> = self.refs.iter().map(String::as_str).collect();
        (0..=src.below(5)).map(|_| src.word(&known)).collect()
    }

    fn service_name(&self, src: &mut Source<'_>) -> String {
        let names: Vec<&str> = self
            .registry
            .services()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        src.word(&names)
    }

    /// The entity of the view `r` names, or (rarely, or when `r` does not resolve) any.
    fn entity_of(&self, r: Option<&String>, src: &mut Source<'_>) -> &Entity {
        let of_ref = r
            .and_then(|r| self.registry.resolve(r).ok())
            .and_then(|fr| self.registry.view_entity(&self.registry.views()[fr.view]));
        let any = self.registry.entities();
        match of_ref {
            Some(e) if !src.rarely() => e,
            _ => &any[src.below(any.len())],
        }
    }
}

/// Accepted keys are one per row, decode to exactly the values sent, and re-encode to
/// the same bytes.
fn check_keys(entity: &Entity, cols: &[pb::KeyColumn], rows: usize, max: usize, keys: &KeyBatch) {
    assert!((1..=max).contains(&rows), "{rows} rows accepted");
    assert_eq!(keys.len(), rows, "{} keys for {rows} rows", keys.len());
    for i in 0..rows {
        let Some(parts) = decode_key(entity, keys.get(i)) else {
            panic!("key {i} does not decode");
        };
        for (jk, part) in entity.join_keys.iter().zip(&parts) {
            let Some(col) = cols.iter().find(|c| c.name == jk.name) else {
                panic!("key accepted without a column for {:?}", jk.name);
            };
            let sent = match &col.values {
                Some(KeyValues::Int64Values(v)) => OwnedKeyPart::Int64(v.values[i]),
                Some(KeyValues::StringValues(v)) => OwnedKeyPart::String(v.values[i].clone()),
                None => panic!("key accepted from an empty column"),
            };
            assert_eq!(&sent, part, "key {i} decodes to another value");
        }
        let borrowed: Vec<KeyPart<'_>> = parts
            .iter()
            .map(|p| match p {
                OwnedKeyPart::Int64(v) => KeyPart::Int64(*v),
                OwnedKeyPart::String(s) => KeyPart::String(s),
            })
            .collect();
        let mut again = Vec::new();
        assert!(encode_key(entity, &borrowed, &mut again).is_ok());
        assert_eq!(again, keys.get(i), "key {i} does not re-encode to itself");
    }
}

/// Feast entity columns as native key columns, if every value has the join key's type
/// (int64 keys take int32 values too, as Feast does).
fn native_columns(
    entity: &Entity,
    cols: &HashMap<String, ft::RepeatedValue>,
) -> Option<Vec<pb::KeyColumn>> {
    use ft::value::Val;
    entity
        .join_keys
        .iter()
        .map(|jk| {
            let col = cols.get(&jk.name)?;
            let values = match jk.ty {
                KeyType::Int64 => KeyValues::Int64Values(pb::Int64Values {
                    values: col
                        .val
                        .iter()
                        .map(|v| match v.val {
                            Some(Val::Int64Val(x)) => Some(x),
                            Some(Val::Int32Val(x)) => Some(i64::from(x)),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                }),
                KeyType::String => KeyValues::StringValues(pb::StringValues {
                    values: col
                        .val
                        .iter()
                        .map(|v| match &v.val {
                            Some(Val::StringVal(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                }),
            };
            Some(pb::KeyColumn {
                name: jk.name.clone(),
                values: Some(values),
            })
        })
        .collect()
}

/// A row count: mostly small, sometimes past the limit, rarely zero.
fn build_rows(src: &mut Source<'_>) -> usize {
    match src.byte() {
        0..=7 => 0,
        8..=15 => 60 + src.below(10),
        _ => 1 + src.below(9),
    }
}

/// `n`, or rarely one more or one less.
fn off_by_one(src: &mut Source<'_>, n: usize) -> usize {
    if !src.rarely() {
        return n;
    }
    if src.flag() {
        n + 1
    } else {
        n.saturating_sub(1)
    }
}

/// A string: mostly short, rarely long enough to pass a key's or a value's bound.
fn build_string(src: &mut Source<'_>) -> String {
    let s = src.text(12);
    if src.rarely() {
        s.repeat(400)
    } else {
        s
    }
}

fn build_keys(src: &mut Source<'_>, entity: &Entity, rows: usize) -> Vec<pb::KeyColumn> {
    let names: Vec<&str> = entity.join_keys.iter().map(|k| k.name.as_str()).collect();
    let mut cols: Vec<pb::KeyColumn> = Vec::with_capacity(entity.join_keys.len() + 1);
    for jk in &entity.join_keys {
        if src.rarely() {
            continue;
        }
        cols.push({
            let ty = if src.rarely() { KeyType::String } else { jk.ty };
            let n = off_by_one(src, rows);
            let values = match src.byte() {
                0..=3 => None,
                _ => Some(match ty {
                    KeyType::Int64 => KeyValues::Int64Values(pb::Int64Values {
                        values: (0..n).map(|_| src.int()).collect(),
                    }),
                    KeyType::String => KeyValues::StringValues(pb::StringValues {
                        values: (0..n).map(|_| build_string(src)).collect(),
                    }),
                }),
            };
            pb::KeyColumn {
                name: jk.name.clone(),
                values,
            }
        });
    }
    if src.rarely() {
        cols.push(pb::KeyColumn {
            name: src.word(&names),
            values: Some(KeyValues::Int64Values(pb::Int64Values {
                values: vec![0; rows],
            })),
        });
    }
    cols
}

fn feast_key_value(src: &mut Source<'_>, ty: KeyType) -> ft::Value {
    use ft::value::Val;
    let val = match (ty, src.byte()) {
        (_, 0..=3) => None,
        (_, 4..=7) => Some(Val::BoolVal(true)),
        (KeyType::Int64, 8..=63) => Some(Val::Int32Val(src.int() as i32)),
        (KeyType::Int64, _) => Some(Val::Int64Val(src.int())),
        (KeyType::String, _) => Some(Val::StringVal(build_string(src))),
    };
    ft::Value { val }
}

fn any_type(src: &mut Source<'_>) -> ValueType {
    const SCALARS: [ScalarType; 8] = [
        ScalarType::Bool,
        ScalarType::Int32,
        ScalarType::Int64,
        ScalarType::Float32,
        ScalarType::Float64,
        ScalarType::String,
        ScalarType::Bytes,
        ScalarType::Timestamp,
    ];
    let s = SCALARS[src.below(SCALARS.len())];
    match src.below(3) {
        0 => ValueType::Scalar(s),
        1 => ValueType::List(s),
        _ => ValueType::Vector {
            dim: src.below(4) as u32,
        },
    }
}

/// A column of `n` values of type `ty`; vectors sometimes of the wrong dimension, lists
/// sometimes with the wrong number of items.
fn build_column(src: &mut Source<'_>, ty: ValueType, n: usize) -> Data {
    match ty {
        ValueType::Scalar(s) => scalar_column(src, s, n),
        ValueType::Vector { dim } => {
            let dim = if src.rarely() {
                src.below(4) as u32
            } else {
                dim
            };
            let len = off_by_one(src, n * dim as usize);
            Data::VectorValues(pb::VectorValues {
                dim,
                values: (0..len).map(|_| src.int() as f32).collect(),
            })
        }
        ValueType::List(s) => {
            let lengths: Vec<u32> = (0..n).map(|_| src.below(4) as u32).collect();
            let total = lengths.iter().sum::<u32>() as usize;
            let total = off_by_one(src, total);
            let items = if src.rarely() {
                None
            } else {
                Some(Box::new(pb::Column {
                    data: Some(scalar_column(src, s, total)),
                }))
            };
            Data::ListValues(Box::new(pb::ListValues { lengths, items }))
        }
    }
}

fn scalar_column(src: &mut Source<'_>, s: ScalarType, n: usize) -> Data {
    match s {
        ScalarType::Bool => Data::BoolValues(pb::BoolValues {
            values: (0..n).map(|_| src.flag()).collect(),
        }),
        ScalarType::Int32 => Data::Int32Values(pb::Int32Values {
            values: (0..n).map(|_| src.int() as i32).collect(),
        }),
        ScalarType::Int64 => Data::Int64Values(pb::Int64Values {
            values: (0..n).map(|_| src.int()).collect(),
        }),
        ScalarType::Float32 => Data::Float32Values(pb::Float32Values {
            values: (0..n).map(|_| f32::from_bits(src.int() as u32)).collect(),
        }),
        ScalarType::Float64 => Data::Float64Values(pb::Float64Values {
            values: (0..n).map(|_| f64::from_bits(src.int() as u64)).collect(),
        }),
        ScalarType::Timestamp => Data::TimestampValues(pb::TimestampValues {
            micros: (0..n).map(|_| src.int()).collect(),
        }),
        ScalarType::String => Data::StringValues(pb::StringValues {
            values: (0..n).map(|_| build_string(src)).collect(),
        }),
        ScalarType::Bytes => Data::BytesValues(pb::BytesValues {
            values: (0..n).map(|_| build_string(src).into_bytes()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_regression_input_still_passes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/requests");
        let inputs = quiver_engine::fuzzing::regression_inputs(&dir)
            .unwrap_or_else(|e| panic!("regressions of requests ({}): {e}", dir.display()));
        let target = RequestTarget::new();
        for (path, data) in inputs {
            eprintln!("replaying {}", path.display());
            target.run(&data);
        }
    }

    /// The structure-aware inputs are only worth it if they get past validation: pseudo-random
    /// choices must produce accepted reads, writes and Feast reads, and refused ones.
    #[test]
    fn built_requests_reach_acceptance() {
        let target = RequestTarget::new();
        let mut reached = HashMap::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..3000u32 {
            let mut input = vec![3 + (i % 3) as u8];
            input.extend((0..400).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
            *reached.entry(target.run(&input)).or_insert(0u32) += 1;
        }
        for r in [
            Reached::NativeGet,
            Reached::Write,
            Reached::FeastGet,
            Reached::Refused,
        ] {
            assert!(
                reached.contains_key(&r),
                "no input reached {r:?}: {reached:?}"
            );
        }
    }
}
