//! Registry → text: the canonical TOML the data directory persists (features in stored order,
//! parsed back unchanged), and what people read: a summary of what a registry declares and
//! the change lines of replacing one registry with another.

use std::fmt::Write;

use super::Registry;

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(super) fn render(r: &Registry) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "project = {}", q(r.project()));
    for e in r.entities() {
        let keys: Vec<String> = e
            .join_keys
            .iter()
            .map(|k| format!("{{ name = {}, type = {} }}", q(&k.name), q(k.ty.name())))
            .collect();
        let _ = writeln!(
            s,
            "\n[[entity]]\nname = {}\ndescription = {}\njoin_keys = [{}]",
            q(&e.name),
            q(&e.description),
            keys.join(", ")
        );
    }
    for v in r.views() {
        let _ = writeln!(
            s,
            "\n[[feature_view]]\nname = {}\nentity = {}\nttl = {}\ndescription = {}\nowner = {}",
            q(&v.name),
            q(&v.entity),
            v.ttl_secs,
            q(&v.description),
            q(&v.owner)
        );
        let tags: Vec<String> = v
            .tags
            .iter()
            .map(|(k, val)| format!("{} = {}", q(k), q(val)))
            .collect();
        let _ = writeln!(s, "tags = {{ {} }}", tags.join(", "));
        let _ = writeln!(
            s,
            "compression = {}\ncompression_level = {}",
            q(v.compression.policy.name()),
            v.compression.level
        );
        if let Some(src) = &v.source {
            let created = src
                .created_timestamp_field
                .as_deref()
                .map(|c| format!(", created_timestamp_field = {}", q(c)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "source = {{ path = {}, timestamp_field = {}{created} }}",
                q(&src.path),
                q(&src.timestamp_field)
            );
        }
        for f in &v.features {
            let _ = writeln!(
                s,
                "[[feature_view.feature]]\nname = {}\ntype = {}\ndescription = {}",
                q(&f.name),
                q(&f.ty.to_string()),
                q(&f.description)
            );
            if let Some(t) = f.ttl_secs {
                let _ = writeln!(s, "ttl = {t}");
            }
            if let Some(c) = &f.column {
                let _ = writeln!(s, "column = {}", q(c));
            }
            if f.storage != crate::value::VectorStorage::Float32 {
                let _ = writeln!(s, "storage = {}", q(f.storage.name()));
            }
        }
    }
    for svc in r.services() {
        let refs: Vec<String> = svc.features.iter().map(|f| q(f)).collect();
        let _ = writeln!(
            s,
            "\n[[feature_service]]\nname = {}\ndescription = {}\nfeatures = [{}]",
            q(&svc.name),
            q(&svc.description),
            refs.join(", ")
        );
    }
    s
}

impl Registry {
    /// What the registry declares, a line per entity, feature view and feature service.
    pub fn summary(&self) -> String {
        let mut s = format!("project {:?}\n", self.project());
        for e in self.entities() {
            let keys: Vec<String> = e
                .join_keys
                .iter()
                .map(|k| format!("{}: {}", k.name, k.ty.name()))
                .collect();
            let _ = writeln!(s, "entity {} ({})", e.name, keys.join(", "));
        }
        for v in self.views() {
            let vectors = v
                .features
                .iter()
                .filter(|f| matches!(f.ty, crate::value::ValueType::Vector { .. }))
                .count();
            let _ = writeln!(
                s,
                "feature view {} on {}: {} features ({} vectors), ttl {}s",
                v.name,
                v.entity,
                v.features.len(),
                vectors,
                v.ttl_secs
            );
        }
        for svc in self.services() {
            let _ = writeln!(
                s,
                "feature service {}: {} features",
                svc.name,
                svc.features.len()
            );
        }
        s
    }

    /// What replacing `self` with `next` would add or change, each as a change line ("add
    /// feature view user_stats (20 features)"); [`Registry::removals`] lists what it would
    /// remove.
    pub fn changes(&self, next: &Registry) -> Vec<String> {
        let mut out = Vec::new();
        for e in next.entities() {
            if self.entity(&e.name).is_none() {
                out.push(format!("add entity {}", e.name));
            }
        }
        for v in next.views() {
            let Some(o) = self.view(&v.name) else {
                out.push(format!(
                    "add feature view {} ({} features)",
                    v.name,
                    v.features.len()
                ));
                continue;
            };
            for f in &v.features {
                if o.feature_index(&f.name).is_none() {
                    out.push(format!("add feature {}:{} ({})", v.name, f.name, f.ty));
                }
            }
            if o.ttl_secs != v.ttl_secs {
                out.push(format!(
                    "change ttl of {} from {}s to {}s",
                    v.name, o.ttl_secs, v.ttl_secs
                ));
            }
            for f in &v.features {
                if let Some(i) = o.feature_index(&f.name) {
                    if o.features[i].ttl_secs != f.ttl_secs {
                        out.push(format!("change ttl of {}:{}", v.name, f.name));
                    }
                    if o.features[i].description != f.description {
                        out.push(format!("change description of {}:{}", v.name, f.name));
                    }
                }
            }
            if o.description != v.description || o.owner != v.owner || o.tags != v.tags {
                out.push(format!("change metadata of {}", v.name));
            }
            if o.compression != v.compression {
                out.push(format!(
                    "change compression of {} from {} (level {}) to {} (level {}); takes \
                     effect at the next checkpoint or load",
                    v.name,
                    o.compression.policy.name(),
                    o.compression.level,
                    v.compression.policy.name(),
                    v.compression.level
                ));
            }
        }
        for s in next.services() {
            match self.service(&s.name) {
                None => out.push(format!("add feature service {}", s.name)),
                Some(o) if o != s => out.push(format!("change feature service {}", s.name)),
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::Registry;

    const BASE: &str = include_str!("../../testdata/vector-view.toml");

    #[test]
    fn summary_names_every_declaration() {
        let r = Registry::from_toml(BASE).unwrap();
        let s = r.summary();
        assert!(s.contains("entity user (user_id: int64)"), "{s}");
        assert!(
            s.contains("feature view v on user: 2 features (1 vectors), ttl 86400s"),
            "{s}"
        );
    }

    #[test]
    fn changes_list_additions_and_edits_but_not_removals() {
        let old = Registry::from_toml(BASE).unwrap();
        let next = BASE.replace("ttl = \"1d\"", "ttl = \"2d\"")
            + "  [[feature_view.feature]]\n  name = \"b\"\n  type = \"float32\"\n\n\
               [[feature_service]]\nname = \"s\"\nfeatures = [\"v:a\"]\n";
        let new = old.evolve(Registry::from_toml(&next).unwrap()).unwrap();
        assert_eq!(
            old.changes(&new),
            [
                "add feature v:b (float32)",
                "change ttl of v from 86400s to 172800s",
                "add feature service s",
            ]
        );
        assert!(new.changes(&new).is_empty());
        // The way back removes b and s: removals are listed by `removals`, not here.
        assert_eq!(
            new.changes(&old),
            ["change ttl of v from 172800s to 86400s"]
        );
    }
}
