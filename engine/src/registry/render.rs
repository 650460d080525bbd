//! Registry → canonical TOML, so the data directory can persist the registry exactly as the
//! store uses it (features in stored order) and parse it back unchanged.

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
