//! The offline benchmark's generator, registry and flag checks.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use clap::Parser;

use super::data::{generate, write_registry, Generated, END_SECS, SPAN_SECS};
use super::duckdb::duckdb_spec;
use super::*;
use quiver_engine::MICROS_PER_SEC;
use quiver_testkit::TempDir;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: OfflineArgs,
}

fn args(extra: &[&str]) -> OfflineArgs {
    let base = [
        "x",
        "--history-rows",
        "30000",
        "--entity-rows",
        "20000",
        "--entities",
        "500",
    ];
    Cli::try_parse_from(base.iter().chain(extra)).unwrap().args
}

fn generate_into(dir: &TempDir, args: &OfflineArgs) -> Generated {
    write_registry(dir.path(), args).unwrap();
    generate(dir.path(), &Sizes::resolve(args).unwrap(), args).unwrap()
}

#[test]
fn data_is_deterministic_with_unique_times_per_user() {
    let args = args(&["--created"]);
    let (a, b) = (
        TempDir::new("bench-offline-test"),
        TempDir::new("bench-offline-test"),
    );
    let gen = generate_into(&a, &args);
    generate_into(&b, &args);
    for f in [HISTORY_FILE, ENTITIES_FILE, REGISTRY_FILE] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs with the same seed");
    }

    let history = quiver_offline::read_parquet(&a.join(HISTORY_FILE)).unwrap();
    assert_eq!(history.num_rows(), 30_000);
    assert_eq!(history.num_columns(), 3 + 8);
    let users = history.column(0).as_primitive::<Int64Type>();
    let times = history.column(1).as_primitive::<TimestampMicrosecondType>();
    let span = (END_SECS - SPAN_SECS) * MICROS_PER_SEC..END_SECS * MICROS_PER_SEC;
    let mut seen = HashSet::new();
    for i in 0..history.num_rows() {
        let (user, t) = (users.value(i), times.value(i));
        assert!(seen.insert((user, t)), "tie at row {i}");
        assert!(span.contains(&t), "row {i} out of the span");
    }
    let distinct: HashSet<i64> = users.values().iter().copied().collect();
    assert_eq!(gen.distinct_keys, distinct.len() as u64);
    let nulls = history.column(3).null_count();
    assert!((100..600).contains(&nulls), "{nulls} nulls in 30000 rows");

    let entities = quiver_offline::read_parquet(&a.join(ENTITIES_FILE)).unwrap();
    assert_eq!(entities.num_rows(), 20_000);
    let keys = entities.column(0).as_primitive::<Int64Type>();
    let ts = entities
        .column(1)
        .as_primitive::<TimestampMicrosecondType>();
    assert!(keys.null_count() > 0 && ts.null_count() > 0);
    let unknown = (0..keys.len()).filter(|&i| keys.is_valid(i) && keys.value(i) >= 500);
    assert!(unknown.count() > 0, "no entity row without history");
    let on_event = (0..keys.len())
        .filter(|&i| keys.is_valid(i) && ts.is_valid(i))
        .filter(|&i| seen.contains(&(keys.value(i), ts.value(i))))
        .count();
    assert!(
        on_event > 100,
        "{on_event} entity rows exactly on an event time"
    );
}

#[test]
fn duckdb_spec_carries_each_features_ttl() {
    let dir = TempDir::new("bench-offline-test");
    let registry = write_registry(dir.path(), &args(&["--features", "10"])).unwrap();
    let spec = duckdb_spec(&registry).unwrap();
    let features = spec["features"].as_array().unwrap();
    assert_eq!(features.len(), 10);
    let ttl = |name: &str| {
        features.iter().find(|f| f["name"] == name).unwrap()["ttl_us"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(ttl("txn_count_7d"), 7 * 86_400_000_000);
    assert_eq!(ttl("failed_logins_24h"), 86_400_000_000);
    assert_eq!(ttl("country"), 0);
    assert_eq!(ttl("txn_count_24h"), 7 * 86_400_000_000);
}

#[test]
fn sizes_are_checked() {
    assert!(Sizes::resolve(&args(&["--features", "0"])).is_err());
    assert!(Sizes::resolve(&args(&["--features", "21"])).is_err());
    let mut no_users = args(&[]);
    no_users.entities = Some(0);
    assert!(Sizes::resolve(&no_users).is_err());
    assert!(Sizes::resolve(&args(&["--repeats", "0"])).is_err());
    let smoke = Sizes::resolve(&Cli::parse_from(["x", "--smoke"]).args).unwrap();
    assert_eq!(smoke.history_rows, 200_000);
}
