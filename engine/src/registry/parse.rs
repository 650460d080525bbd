//! TOML → unvalidated raw structs → validated [`Registry`].

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use toml::Spanned;

use super::{
    parse_ttl, Compression, CompressionPolicy, Entity, Feature, FeatureService, FeatureView,
    JoinKey, KeyType, OfflineSource, Registry, RegistryError,
};
use crate::value::{ValueType, VectorStorage};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    project: Option<String>,
    #[serde(default, rename = "entity")]
    entities: Vec<RawEntity>,
    #[serde(default, rename = "feature_view")]
    views: Vec<RawView>,
    #[serde(default, rename = "feature_service")]
    services: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: Spanned<String>,
    join_keys: Vec<RawJoinKey>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoinKey {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTtl {
    Secs(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: Spanned<String>,
    entity: Spanned<String>,
    ttl: Option<Spanned<RawTtl>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    source: Option<RawSource>,
    compression: Option<Spanned<String>>,
    compression_level: Option<Spanned<i64>>,
    #[serde(default, rename = "feature")]
    features: Vec<RawFeature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: String,
    #[serde(default = "default_timestamp_field")]
    timestamp_field: String,
    created_timestamp_field: Option<String>,
}

fn default_timestamp_field() -> String {
    "event_timestamp".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    ttl: Option<Spanned<RawTtl>>,
    #[serde(default)]
    description: String,
    column: Option<String>,
    storage: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    features: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
}

/// Turns byte spans into "line N" for messages.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> String {
        let start = s.span().start.min(self.0.len());
        let line = self.0.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("line {line}")
    }
}

fn ttl_secs(raw: &Spanned<RawTtl>) -> Result<u64, String> {
    match raw.get_ref() {
        RawTtl::Secs(n) if *n < 0 => Err(format!("TTL {n} is negative")),
        RawTtl::Secs(n) => parse_ttl(&n.to_string()),
        RawTtl::Text(t) => parse_ttl(t),
    }
}

/// Longest entity, view, feature or service name (snapshot headers store view names in 128
/// bytes).
const MAX_NAME_LEN: usize = 128;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

pub(super) fn parse(text: &str) -> Result<Registry, RegistryError> {
    let raw: RawRegistry =
        toml::from_str(text).map_err(|e| RegistryError::Syntax(e.to_string()))?;
    let lines = Lines(text);
    let mut problems = Vec::new();

    let mut entities = Vec::new();
    let mut entity_names = HashSet::new();
    for e in raw.entities {
        let name = e.name.get_ref().clone();
        let at = lines.at(&e.name);
        if !valid_name(&name) {
            problems.push(format!(
                "{at}: entity name {name:?} must be 1 to 128 letters, digits, '_', '-' or '.'"
            ));
        }
        if !entity_names.insert(name.clone()) {
            problems.push(format!("{at}: duplicate entity {name:?}"));
        }
        if e.join_keys.is_empty() {
            problems.push(format!("{at}: entity {name:?} has no join keys"));
        }
        let mut keys = Vec::new();
        let mut key_names = HashSet::new();
        for k in e.join_keys {
            let kname = k.name.get_ref().clone();
            if !key_names.insert(kname.clone()) {
                problems.push(format!(
                    "{}: entity {name:?}: duplicate join key {kname:?}",
                    lines.at(&k.name)
                ));
            }
            let ty = match k.ty.get_ref().as_str() {
                "int64" => KeyType::Int64,
                "string" => KeyType::String,
                other => {
                    problems.push(format!(
                        "{}: entity {name:?} join key {kname:?}: unknown key type {other:?} \
                         (expected int64 or string)",
                        lines.at(&k.ty)
                    ));
                    KeyType::Int64
                }
            };
            keys.push(JoinKey { name: kname, ty });
        }
        entities.push(Entity {
            name,
            join_keys: keys,
            description: e.description,
        });
    }

    let mut views = Vec::new();
    let mut view_names = HashSet::new();
    for v in raw.views {
        let name = v.name.get_ref().clone();
        let at = lines.at(&v.name);
        if !valid_name(&name) {
            problems.push(format!(
                "{at}: feature view name {name:?} must be 1 to 128 letters, digits, '_', '-' \
                 or '.'"
            ));
        }
        if !view_names.insert(name.clone()) {
            problems.push(format!("{at}: duplicate feature view {name:?}"));
        }
        let entity = v.entity.get_ref().clone();
        if !entity_names.contains(&entity) {
            problems.push(format!(
                "{}: feature view {name:?}: field \"entity\" names {entity:?}, which is not a \
                 declared entity",
                lines.at(&v.entity)
            ));
        }
        let ttl = match &v.ttl {
            None => 0,
            Some(t) => ttl_secs(t).unwrap_or_else(|e| {
                problems.push(format!(
                    "{}: feature view {name:?} field \"ttl\": {e}",
                    lines.at(t)
                ));
                0
            }),
        };
        let mut compression = Compression::default();
        if let Some(c) = &v.compression {
            match CompressionPolicy::from_name(c.get_ref()) {
                Some(p) => compression.policy = p,
                None => problems.push(format!(
                    "{}: feature view {name:?} field \"compression\": unknown policy {:?} \
                     (expected none, zstd or auto)",
                    lines.at(c),
                    c.get_ref()
                )),
            }
        }
        if let Some(l) = &v.compression_level {
            let level = *l.get_ref();
            if (1..=i64::from(Compression::MAX_LEVEL)).contains(&level) {
                compression.level = level as i32;
            } else {
                problems.push(format!(
                    "{}: feature view {name:?} field \"compression_level\": {level} is not \
                     between 1 and {}",
                    lines.at(l),
                    Compression::MAX_LEVEL
                ));
            }
        }
        if v.features.is_empty() {
            problems.push(format!("{at}: feature view {name:?} has no features"));
        }
        let mut features = Vec::new();
        let mut feature_names = HashSet::new();
        for f in v.features {
            let fname = f.name.get_ref().clone();
            let fat = lines.at(&f.name);
            if !valid_name(&fname) {
                problems.push(format!(
                    "{fat}: feature view {name:?}: feature name {fname:?} must be 1 to 128 \
                     letters, digits, '_', '-' or '.'"
                ));
            }
            if !feature_names.insert(fname.clone()) {
                problems.push(format!(
                    "{fat}: feature view {name:?}: duplicate feature {fname:?}"
                ));
            }
            let ty = ValueType::parse(f.ty.get_ref()).unwrap_or_else(|e| {
                problems.push(format!(
                    "{}: feature view {name:?} feature {fname:?} field \"type\": {e}",
                    lines.at(&f.ty)
                ));
                ValueType::Scalar(crate::value::ScalarType::Int64)
            });
            let fttl = match &f.ttl {
                None => None,
                Some(t) => match ttl_secs(t) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        problems.push(format!(
                            "{}: feature view {name:?} feature {fname:?} field \"ttl\": {e}",
                            lines.at(t)
                        ));
                        None
                    }
                },
            };
            let storage = match &f.storage {
                None => VectorStorage::Float32,
                Some(st) => match (VectorStorage::parse(st.get_ref()), ty) {
                    (Some(s), ValueType::Vector { .. }) => s,
                    (Some(_), _) => {
                        problems.push(format!(
                            "{}: feature view {name:?} feature {fname:?} field \"storage\": only \
                             vector features have a storage choice, this one is {ty}",
                            lines.at(st)
                        ));
                        VectorStorage::Float32
                    }
                    (None, _) => {
                        problems.push(format!(
                            "{}: feature view {name:?} feature {fname:?} field \"storage\": \
                             unknown storage {:?} (expected float32, float16, bfloat16 or int8)",
                            lines.at(st),
                            st.get_ref()
                        ));
                        VectorStorage::Float32
                    }
                },
            };
            features.push(Feature {
                name: fname,
                ty,
                ttl_secs: fttl,
                description: f.description,
                column: f.column,
                storage,
            });
        }
        views.push(FeatureView {
            name,
            entity,
            ttl_secs: ttl,
            description: v.description,
            owner: v.owner,
            tags: v.tags,
            source: v.source.map(|s| OfflineSource {
                path: s.path,
                timestamp_field: s.timestamp_field,
                created_timestamp_field: s.created_timestamp_field,
            }),
            features,
            compression,
        });
    }

    let mut services = Vec::new();
    let mut service_names = HashSet::new();
    for s in raw.services {
        let name = s.name.get_ref().clone();
        let at = lines.at(&s.name);
        if !service_names.insert(name.clone()) {
            problems.push(format!("{at}: duplicate feature service {name:?}"));
        }
        if s.features.is_empty() {
            problems.push(format!("{at}: feature service {name:?} lists no features"));
        }
        let mut refs = Vec::new();
        for r in s.features {
            let reference = r.get_ref().clone();
            let known = reference.split_once(':').is_some_and(|(vn, fname)| {
                views
                    .iter()
                    .any(|v| v.name == vn && v.feature_index(fname).is_some())
            });
            if !known {
                problems.push(format!(
                    "{}: feature service {name:?}: {reference:?} does not name a declared \
                     \"view:feature\"",
                    lines.at(&r)
                ));
            }
            refs.push(reference);
        }
        services.push(FeatureService {
            name,
            features: refs,
            description: s.description,
        });
    }

    if !problems.is_empty() {
        return Err(RegistryError::Invalid(problems));
    }
    Ok(Registry::from_parts(
        raw.project.unwrap_or_else(|| "default".into()),
        entities,
        views,
        services,
    ))
}
