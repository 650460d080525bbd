//! `quiver serve --demo`: the example registry and a small generated dataset, so a newcomer
//! sees features served within a minute of cloning.

use std::sync::Arc;

use quiver_engine::{Clock, Db, KeyPart, Registry, Row, SystemClock, Value};
use tracing::{info, warn};

/// The example registry shipped in the repository, compiled in.
pub(crate) const EXAMPLE_REGISTRY: &str = include_str!("../../examples/registry.toml");

/// Demo users written when the `user_stats` view is empty.
const DEMO_USERS: i64 = 10_000;

pub(crate) fn example_registry() -> Result<Registry, String> {
    Registry::from_toml(EXAMPLE_REGISTRY).map_err(|e| e.to_string())
}

/// A tiny deterministic generator (splitmix64), so the demo needs no dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// Writes the demo users unless the view already has data.
pub(crate) fn load(db: &Arc<Db>) {
    let has_data = db
        .stats()
        .views
        .iter()
        .any(|v| v.view == "user_stats" && (v.entities > 0 || v.base_entities > 0));
    if has_data {
        info!("demo: user_stats already has data; not generating");
        return;
    }
    let registry = db.registry();
    let (Some(user), Some(view)) = (registry.entity("user"), registry.view("user_stats")) else {
        warn!("demo: the registry has no user / user_stats; nothing generated");
        return;
    };
    let countries = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "NG"];
    let now = SystemClock.now_micros() / 1_000_000 * 1_000_000;
    let mut rows = Vec::with_capacity(1000);
    for id in 0..DEMO_USERS {
        let s = id as u64 * 64;
        let mut key = Vec::new();
        if quiver_engine::encode_key(user, &[KeyPart::Int64(id)], &mut key).is_err() {
            return;
        }
        let count = |k: u64, scale: f64| (unit(s + k).powi(3) * scale) as i64;
        let values: Vec<(usize, Value)> = view
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let k = i as u64;
                let v = match f.ty.to_string().as_str() {
                    "int64" => Value::Int64(count(k, 200.0)),
                    "int32" => Value::Int32(count(k, 20.0) as i32),
                    "float32" => Value::Float32(unit(s + k) as f32),
                    "float64" => Value::Float64((unit(s + k) * 6.0).exp().round() / 100.0),
                    "string" => Value::String(countries[(mix(s + k) % 8) as usize].to_string()),
                    "bool" => Value::Bool(mix(s + k).is_multiple_of(3)),
                    _ => Value::Null,
                };
                (i, v)
            })
            .collect();
        rows.push(Row {
            key,
            event_ts: now - (mix(s) % 3_600) as i64 * 1_000_000,
            created_ts: None,
            values,
        });
        if rows.len() == 1000 {
            if let Err(e) = db.write("user_stats", &rows) {
                warn!("demo: write failed: {e}");
                return;
            }
            rows.clear();
        }
    }
    info!(users = DEMO_USERS, "demo: generated user_stats");
}
