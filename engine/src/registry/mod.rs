//! The registry: entities, feature views and feature services, parsed from TOML and validated.
//!
//! The registry is the schema of the whole store. It is written by users, so every problem is
//! reported with the line and the name of the view/feature/field it concerns, all at once.

mod parse;
mod render;
mod ttl;

pub use ttl::parse_ttl;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use crate::value::{ValueType, VectorStorage};

/// The type of one join key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// A signed 64-bit integer id.
    Int64,
    /// A UTF-8 string id.
    String,
}

impl KeyType {
    /// Registry spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Int64 => "int64",
            Self::String => "string",
        }
    }
}

/// One join key column of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinKey {
    /// Column name, e.g. `user_id`.
    pub name: String,
    /// Column type.
    pub ty: KeyType,
}

/// Something features describe: a user, an item, a (user, item) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Entity name.
    pub name: String,
    /// One or more join keys; several make a composite key.
    pub join_keys: Vec<JoinKey>,
    /// Free text.
    pub description: String,
}

/// One feature of a view.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Name, unique within its view.
    pub name: String,
    /// Value type.
    pub ty: ValueType,
    /// Its own TTL in seconds, overriding the view's (0 = never expires).
    pub ttl_secs: Option<u64>,
    /// Free text.
    pub description: String,
    /// Column name in the offline source, when it differs from `name`.
    pub column: Option<String>,
    /// How a vector feature's components are stored (lossy options are opt-in).
    pub storage: VectorStorage,
}

/// Where a view's history lives offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineSource {
    /// A Parquet file or a directory of Parquet files.
    pub path: String,
    /// The event timestamp column.
    pub timestamp_field: String,
    /// The optional created timestamp column (tie-breaker for equal event times).
    pub created_timestamp_field: Option<String>,
}

/// A named group of features of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureView {
    /// View name.
    pub name: String,
    /// The entity the view's rows are keyed by.
    pub entity: String,
    /// Default TTL in seconds for its features (0 = never expires).
    pub ttl_secs: u64,
    /// Free text.
    pub description: String,
    /// Who to ask about this view.
    pub owner: String,
    /// Arbitrary labels.
    pub tags: BTreeMap<String, String>,
    /// Offline history, if any.
    pub source: Option<OfflineSource>,
    /// Features in schema order.
    pub features: Vec<Feature>,
    /// How snapshots of this view compress their records.
    pub compression: Compression,
}

/// Which compression a view's snapshot records get (see `crate::pack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompressionPolicy {
    /// Records are stored as encoded: no decode cost.
    None,
    /// Records are zstd-compressed with a dictionary trained on the view's own records.
    Zstd,
    /// Decided per snapshot from a sample of records: zstd only where it saves enough bytes
    /// for what it costs to decode.
    #[default]
    Auto,
}

impl CompressionPolicy {
    /// Registry spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Auto => "auto",
        }
    }

    /// The policy spelled `name` in a registry.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "zstd" => Some(Self::Zstd),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// A view's compression settings. Unlike the schema they may change at any time: each
/// snapshot records what it used, and records say which dictionary they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compression {
    /// The policy.
    pub policy: CompressionPolicy,
    /// zstd level, 1..=19. Only snapshot building pays for higher levels; reads do not.
    pub level: i32,
}

impl Compression {
    /// The default zstd level.
    pub const DEFAULT_LEVEL: i32 = 3;
    /// Highest level accepted (the "ultra" levels need large windows, useless for records).
    pub const MAX_LEVEL: i32 = 19;
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            policy: CompressionPolicy::Auto,
            level: Self::DEFAULT_LEVEL,
        }
    }
}

impl FeatureView {
    /// Index of the feature called `name`.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name)
    }

    /// The effective TTL of feature `i` in seconds (0 = never expires).
    pub fn feature_ttl_secs(&self, i: usize) -> u64 {
        self.features[i].ttl_secs.unwrap_or(self.ttl_secs)
    }
}

/// A named list of feature references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureService {
    /// Service name.
    pub name: String,
    /// `view:feature` references.
    pub features: Vec<String>,
    /// Free text.
    pub description: String,
}

/// A resolved `view:feature` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureRef {
    /// Index of the view in [`Registry::views`].
    pub view: usize,
    /// Index of the feature in the view's schema.
    pub feature: usize,
}

/// What went wrong with a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be read.
    #[error("cannot read registry {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The text is not valid TOML or does not have the registry's shape.
    #[error("registry is not valid: {0}")]
    Syntax(String),
    /// The registry parsed but breaks rules; every problem is listed.
    #[error("registry is not valid:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A new registry version would change existing data's meaning.
    #[error("registry change refused:\n  {}", .0.join("\n  "))]
    Incompatible(Vec<String>),
    /// A feature reference does not name a known view and feature.
    #[error("{0}")]
    UnknownFeature(String),
}

/// A validated set of entities, views and services.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    project: String,
    entities: Vec<Entity>,
    views: Vec<FeatureView>,
    services: Vec<FeatureService>,
    view_by_name: HashMap<String, usize>,
}

impl Registry {
    /// Parses and validates a registry from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        parse::parse(text)
    }

    /// Reads, parses and validates a registry file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text)
    }

    pub(crate) fn from_parts(
        project: String,
        entities: Vec<Entity>,
        views: Vec<FeatureView>,
        services: Vec<FeatureService>,
    ) -> Self {
        let view_by_name = views
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.clone(), i))
            .collect();
        Self {
            project,
            entities,
            views,
            services,
            view_by_name,
        }
    }

    /// Canonical TOML for this registry; parsing it gives back an equal registry.
    pub fn to_toml(&self) -> String {
        render::render(self)
    }

    /// The project name (Feast's namespace for keys).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// All entities.
    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// All feature views.
    pub fn views(&self) -> &[FeatureView] {
        &self.views
    }

    /// All feature services.
    pub fn services(&self) -> &[FeatureService] {
        &self.services
    }

    /// The entity called `name`.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// Index of the view called `name`.
    pub fn view_index(&self, name: &str) -> Option<usize> {
        self.view_by_name.get(name).copied()
    }

    /// The view called `name`.
    pub fn view(&self, name: &str) -> Option<&FeatureView> {
        self.view_index(name).map(|i| &self.views[i])
    }

    /// The entity a view is keyed by.
    pub fn view_entity(&self, view: &FeatureView) -> Option<&Entity> {
        self.entity(&view.entity)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&FeatureService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Resolves a `view:feature` reference.
    pub fn resolve(&self, reference: &str) -> Result<FeatureRef, RegistryError> {
        let (view_name, feature_name) = reference.split_once(':').ok_or_else(|| {
            RegistryError::UnknownFeature(format!(
                "feature reference {reference:?} must look like \"view:feature\""
            ))
        })?;
        let view = self.view_index(view_name).ok_or_else(|| {
            RegistryError::UnknownFeature(format!(
                "feature reference {reference:?}: no feature view named {view_name:?}"
            ))
        })?;
        let feature = self.views[view]
            .feature_index(feature_name)
            .ok_or_else(|| {
                RegistryError::UnknownFeature(format!(
                    "feature reference {reference:?}: view {view_name:?} has no feature named \
                     {feature_name:?}"
                ))
            })?;
        Ok(FeatureRef { view, feature })
    }

    /// What replacing `self` with `next` would remove: feature views (and their data), feature
    /// services and entities, each as a change line ("remove feature view user_stats").
    /// [`Registry::evolve`] allows removals; callers that apply a user's registry refuse them
    /// unless the user asked for them explicitly.
    pub fn removals(&self, next: &Registry) -> Vec<String> {
        let mut out = Vec::new();
        for v in &self.views {
            if next.view(&v.name).is_none() {
                out.push(format!(
                    "remove feature view {} ({} features; its stored data is dropped)",
                    v.name,
                    v.features.len()
                ));
            }
        }
        for s in &self.services {
            if next.service(&s.name).is_none() {
                out.push(format!("remove feature service {}", s.name));
            }
        }
        for e in &self.entities {
            if next.entity(&e.name).is_none() {
                out.push(format!("remove entity {}", e.name));
            }
        }
        out
    }

    /// `self` with whatever `kept` has that `self` leaves out (feature views, feature services,
    /// entities) added back: a registry given on start adds to a data directory's registry
    /// but never removes from it.
    pub fn keeping(self, kept: &Registry) -> Registry {
        let Registry {
            project,
            mut entities,
            mut views,
            mut services,
            ..
        } = self;
        for e in &kept.entities {
            if !entities.iter().any(|x| x.name == e.name) {
                entities.push(e.clone());
            }
        }
        for v in &kept.views {
            if !views.iter().any(|x| x.name == v.name) {
                views.push(v.clone());
            }
        }
        for s in &kept.services {
            if !services.iter().any(|x| x.name == s.name) {
                services.push(s.clone());
            }
        }
        Registry::from_parts(project, entities, views, services)
    }

    /// Checks that `next` can replace `self` without changing the meaning of stored data, and
    /// returns `next` with each existing view's features in their old order (new features
    /// after them), so record layouts stay valid.
    ///
    /// Adding entities, views, features and services is fine. Changing a feature's type, a
    /// view's entity, an entity's join keys, or removing a feature is refused: version the view
    /// instead (`user_stats_v2`).
    pub fn evolve(&self, next: Registry) -> Result<Registry, RegistryError> {
        let mut problems = Vec::new();
        for old in &self.entities {
            if let Some(new) = next.entity(&old.name) {
                if new.join_keys != old.join_keys {
                    problems.push(format!(
                        "entity {:?}: join keys changed from {} to {}; create a new entity instead",
                        old.name,
                        describe_keys(&old.join_keys),
                        describe_keys(&new.join_keys)
                    ));
                }
            }
        }
        let mut views = next.views.clone();
        for new in &mut views {
            let Some(old) = self.view(&new.name) else {
                continue;
            };
            if new.entity != old.entity {
                problems.push(format!(
                    "feature view {:?}: entity changed from {:?} to {:?}; version the view \
                     instead (e.g. {:?})",
                    old.name,
                    old.entity,
                    new.entity,
                    format!("{}_v2", old.name)
                ));
            }
            let mut ordered = Vec::with_capacity(new.features.len());
            for of in &old.features {
                match new.features.iter().find(|f| f.name == of.name) {
                    Some(nf) if nf.ty == of.ty && nf.storage != of.storage => {
                        problems.push(format!(
                        "feature view {:?} feature {:?}: storage changed from {} to {}; stored \
                         vectors would be misread, so version the view instead",
                        old.name,
                        of.name,
                        of.storage.name(),
                        nf.storage.name()
                    ))
                    }
                    Some(nf) if nf.ty != of.ty => problems.push(format!(
                        "feature view {:?} feature {:?}: type changed from {} to {}; version \
                         the view instead (e.g. {:?})",
                        old.name,
                        of.name,
                        of.ty,
                        nf.ty,
                        format!("{}_v2", old.name)
                    )),
                    Some(nf) => ordered.push(nf.clone()),
                    None => problems.push(format!(
                        "feature view {:?}: feature {:?} was removed; stored values would lose \
                         their meaning, so version the view instead",
                        old.name, of.name
                    )),
                }
            }
            for nf in &new.features {
                if old.feature_index(&nf.name).is_none() {
                    ordered.push(nf.clone());
                }
            }
            new.features = ordered;
        }
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible(problems));
        }
        Ok(Registry::from_parts(
            next.project,
            next.entities,
            views,
            next.services,
        ))
    }
}

fn describe_keys(keys: &[JoinKey]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| format!("{}:{}", k.name, k.ty.name()))
        .collect();
    format!("({})", parts.join(", "))
}

impl fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "view#{}:feature#{}", self.view, self.feature)
    }
}

#[cfg(test)]
mod tests;
