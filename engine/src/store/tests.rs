use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::reclaim::ReclaimStats;
use super::*;
use crate::clock::ManualClock;
use crate::key::KeyPart;
use crate::testing::{
    check_cell, int_key, mixed_view, random_value, registry, store_of, MINUTE as MIN, T0,
};
use crate::value::ColumnData;

/// Entities `user` (int64 `id`) and `pair` (string `a`, int64 `b`); view `v` of users mixes
/// every kind of feature, `w` has a float64, `p` is keyed by pairs.
fn store_schema() -> String {
    let entities = include_str!("../../testdata/store-entities.toml");
    let others = include_str!("../../testdata/store-views.toml");
    format!("{entities}{}\n{others}", mixed_view("v", "user"))
}

fn store(shards: usize) -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    (store_of(&store_schema(), shards, &clock), clock)
}

fn user_key(store: &Store, id: i64) -> Vec<u8> {
    int_key(store.registry().entity("user").unwrap(), id)
}

fn keys(store: &Store, ids: &[i64]) -> KeyBatch {
    let reg = store.registry();
    let mut b = KeyBatch::new();
    for id in ids {
        b.push(reg.entity("user").unwrap(), &[KeyPart::Int64(*id)])
            .unwrap();
    }
    b
}

fn row(store: &Store, id: i64, ts: i64, values: Vec<(usize, Value)>) -> Row {
    Row {
        key: user_key(store, id),
        event_ts: ts,
        created_ts: None,
        values,
    }
}

#[test]
fn batched_get_returns_columns_in_request_order_with_duplicates() {
    let (s, _) = store(4);
    let rows: Vec<Row> = (0..100)
        .map(|i| {
            row(
                &s,
                i,
                T0 - 1,
                vec![
                    (0, Value::Int64(i * 10)),
                    (3, Value::String(format!("u{i}"))),
                ],
            )
        })
        .collect();
    s.write("v", &rows).unwrap();
    let ids = [5, 99, 5, 1000, 0];
    let cols = s
        .get_features(
            &["v:name", "v:count", "v:ratio"],
            &keys(&s, &ids),
            &ReadOptions::default(),
        )
        .unwrap();
    assert_eq!(cols[0].get(0), Some(Value::String("u5".into())));
    assert_eq!(cols[0].get(1), Some(Value::String("u99".into())));
    assert_eq!(cols[0].get(2), Some(Value::String("u5".into())));
    assert_eq!(cols[0].statuses[3], Status::NotFound);
    assert_eq!(cols[1].get(4), Some(Value::Int64(0)));
    assert_eq!(cols[1].event_ts[1], T0 - 1);
    assert_eq!(
        cols[2].statuses,
        vec![Status::NotFound; 5],
        "ratio never written"
    );
    match &cols[1].values {
        ColumnData::Int64(v) => assert_eq!(v, &[50, 990, 50, 0, 0]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ttl_is_per_feature_and_max_age_is_stricter() {
    let (s, clock) = store(2);
    s.write(
        "v",
        &[row(
            &s,
            1,
            T0,
            vec![
                (0, Value::Int64(1)),
                (1, Value::Float32(0.5)),
                (3, Value::Null),
            ],
        )],
    )
    .unwrap();
    let k = keys(&s, &[1]);
    let refs = ["v:count", "v:ratio", "v:name"];
    let statuses = |opts: ReadOptions| -> Vec<Status> {
        s.get_features(&refs, &k, &opts)
            .unwrap()
            .iter()
            .map(|c| c.statuses[0])
            .collect()
    };
    use Status::*;
    assert_eq!(
        statuses(ReadOptions::default()),
        [Present, Present, NullValue]
    );
    // Exactly at the TTL boundary the value is still served (event_ts >= now - ttl).
    clock.set(T0 + 10 * MIN);
    assert_eq!(
        statuses(ReadOptions::default()),
        [Present, Present, NullValue]
    );
    clock.set(T0 + 10 * MIN + 1);
    assert_eq!(
        statuses(ReadOptions::default()),
        [OutsideMaxAge, Present, NullValue]
    );
    let strict = ReadOptions {
        max_age: Some(MIN),
        now: None,
        max_variable_bytes: None,
    };
    assert_eq!(
        statuses(strict),
        [OutsideMaxAge, OutsideMaxAge, OutsideMaxAge]
    );
    clock.set(T0 + 1000 * MIN);
    assert_eq!(
        statuses(ReadOptions::default()),
        [OutsideMaxAge, OutsideMaxAge, NullValue]
    );
    let cols = s.get_features(&refs, &k, &ReadOptions::default()).unwrap();
    assert_eq!(
        cols[0].event_ts[0], T0,
        "withheld values still report their time"
    );
    assert_eq!(cols[0].get(0), None);
}

#[test]
fn reclaimer_frees_expired_values_and_entities() {
    let (s, clock) = store(4);
    let rows: Vec<Row> = (0..5000)
        .map(|i| {
            row(
                &s,
                i,
                T0,
                vec![(0, Value::Int64(i)), (1, Value::Float32(1.0))],
            )
        })
        .collect();
    s.write("v", &rows).unwrap();
    s.write(
        "v",
        &[row(&s, 7, T0, vec![(3, Value::String("keep".into()))])],
    )
    .unwrap();
    let before = s.stats()[0].clone();
    assert_eq!(before.entities, 5000);
    clock.set(T0 + 30 * MIN);
    let st = s.reclaim_all();
    assert_eq!(st.values_expired, 5000, "only the 10-minute counts expired");
    assert_eq!(st.entities_removed, 0);
    clock.set(T0 + 61 * MIN);
    // Bounded steps make progress and eventually cover everything.
    let mut total = ReclaimStats::default();
    for _ in 0..10_000 {
        total.add(s.reclaim_step(64));
        if total.entities_removed == 4999 {
            break;
        }
    }
    assert_eq!(total.entities_removed, 4999);
    let after = s.stats()[0].clone();
    assert_eq!(after.entities, 1);
    assert!(after.bytes < before.bytes / 4, "{after:?} vs {before:?}");
    let cols = s
        .get_features(
            &["v:name", "v:count"],
            &keys(&s, &[7, 8]),
            &ReadOptions::default(),
        )
        .unwrap();
    assert_eq!(cols[0].get(0), Some(Value::String("keep".into())));
    assert_eq!(cols[1].statuses, [Status::NotFound, Status::NotFound]);
}

#[test]
fn bad_writes_are_refused_whole_and_change_nothing() {
    let (s, _) = store(2);
    let good = row(&s, 1, T0, vec![(0, Value::Int64(1))]);
    let cases = [
        (
            row(&s, 2, T0, vec![(0, Value::String("x".into()))]),
            "feature \"count\" of view \"v\" is int64, got a string",
        ),
        (
            row(&s, 2, T0, vec![(5, Value::Vector(vec![1.0]))]),
            "dimension 1 (expected 2)",
        ),
        (
            row(&s, 2, T0, vec![(42, Value::Int64(1))]),
            "no feature #42",
        ),
        (
            row(&s, 2, T0, vec![(0, Value::Int64(1)), (0, Value::Int64(2))]),
            "given twice",
        ),
        (row(&s, 2, T0, vec![]), "no feature values"),
        (
            Row {
                key: vec![0xff],
                event_ts: T0,
                created_ts: None,
                values: vec![(0, Value::Int64(1))],
            },
            "not a valid encoded key",
        ),
    ];
    for (bad, msg) in cases {
        let err = s.write("v", &[good.clone(), bad]).unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains(msg), "{err} should contain {msg}");
        assert!(err.to_string().starts_with("row 1"), "{err}");
    }
    assert_eq!(
        s.stats()[0].entities,
        0,
        "nothing of a refused batch was applied"
    );
    assert!(matches!(
        s.write("nope", &[good]),
        Err(EngineError::NotFound(_))
    ));
}

#[test]
fn selections_are_checked() {
    let (s, _) = store(2);
    assert!(matches!(
        s.select(&["v:nope"]),
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        s.select::<&str>(&[]),
        Err(EngineError::InvalidArgument(_))
    ));
    let e = s.select(&["v:count", "p:n"]).unwrap_err();
    assert!(
        e.to_string().contains("cannot be read with the same keys"),
        "{e}"
    );
    let sel = s.select(&["v:count", "w:x", "v:name"]).unwrap();
    assert_eq!(sel.names(true), ["v__count", "w__x", "v__name"]);
    assert_eq!(sel.entity().name, "user");
}

#[test]
fn composite_keys_and_views_sharing_an_entity() {
    let (s, _) = store(8);
    let reg = s.registry();
    let pair = reg.entity("pair").unwrap();
    let mut kb = KeyBatch::new();
    kb.push(pair, &[KeyPart::String("m1"), KeyPart::Int64(1)])
        .unwrap();
    kb.push(pair, &[KeyPart::String("m1"), KeyPart::Int64(2)])
        .unwrap();
    s.write(
        "p",
        &[Row {
            key: kb.get(1).to_vec(),
            event_ts: T0,
            created_ts: None,
            values: vec![(0, Value::Int32(-3))],
        }],
    )
    .unwrap();
    let cols = s
        .get_features(&["p:n"], &kb, &ReadOptions::default())
        .unwrap();
    assert_eq!(cols[0].statuses, [Status::NotFound, Status::Present]);
    assert_eq!(cols[0].get(1), Some(Value::Int32(-3)));

    s.write("v", &[row(&s, 3, T0, vec![(0, Value::Int64(30))])])
        .unwrap();
    s.write("w", &[row(&s, 3, T0, vec![(0, Value::Float64(0.25))])])
        .unwrap();
    let cols = s
        .get_features(
            &["w:x", "v:count"],
            &keys(&s, &[3]),
            &ReadOptions::default(),
        )
        .unwrap();
    assert_eq!(cols[0].get(0), Some(Value::Float64(0.25)));
    assert_eq!(cols[1].get(0), Some(Value::Int64(30)));
}

#[test]
fn registry_can_grow_live_without_losing_data() {
    let (s, _) = store(2);
    s.write("v", &[row(&s, 1, T0, vec![(0, Value::Int64(5))])])
        .unwrap();
    let grown = store_schema().replace(
        "  [[feature_view.feature]]\n  name = \"count\"",
        "  [[feature_view.feature]]\n  name = \"fresh\"\n  type = \"string\"\n  [[feature_view.feature]]\n  name = \"count\"",
    );
    let merged = s.apply_registry(registry(&grown)).unwrap();
    let v = merged.view("v").unwrap();
    assert_eq!(v.features.last().unwrap().name, "fresh");
    let cols = s
        .get_features(
            &["v:count", "v:fresh"],
            &keys(&s, &[1]),
            &ReadOptions::default(),
        )
        .unwrap();
    assert_eq!(cols[0].get(0), Some(Value::Int64(5)));
    assert_eq!(cols[1].statuses[0], Status::NotFound);
    let idx = v.feature_index("fresh").unwrap();
    s.write(
        "v",
        &[row(&s, 1, T0, vec![(idx, Value::String("hi".into()))])],
    )
    .unwrap();
    let cols = s
        .get_features(
            &["v:count", "v:fresh"],
            &keys(&s, &[1]),
            &ReadOptions::default(),
        )
        .unwrap();
    assert_eq!(cols[0].get(0), Some(Value::Int64(5)));
    assert_eq!(cols[1].get(0), Some(Value::String("hi".into())));
    let bad = store_schema().replace("type = \"float32\"", "type = \"float64\"");
    assert!(matches!(
        s.apply_registry(registry(&bad)),
        Err(EngineError::Registry(_))
    ));
}

#[test]
fn shard_count_must_be_a_power_of_two() {
    let reg = registry(&store_schema());
    let e = Store::new(
        reg,
        StoreConfig { shards: 3 },
        Arc::new(ManualClock::new(0)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("power of two"));
}

// ---------------------------------------------------------------------------------------------
// Model-based test: random operations against a plain HashMap model.

#[derive(Debug, Clone)]
struct ModelCell {
    value: Value,
    ts: i64,
    created: i64,
}

type Model = HashMap<i64, Vec<Option<ModelCell>>>;

#[test]
fn model_based_random_operations() {
    for seed in 0..12u64 {
        run_model(seed, 1500);
    }
}

fn run_model(seed: u64, steps: usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (s, clock) = store(4);
    let reg = s.registry();
    let view = reg.view("v").unwrap().clone();
    let n = view.features.len();
    let mut model: Model = HashMap::new();
    let mut now = T0;
    let mut out = GetResult::new();
    for step in 0..steps {
        match rng.random_range(0..100) {
            0..=49 => {
                // A batch of writes: random keys, timestamps around now (late, equal, future
                // ones), random subsets of features, optional created times.
                let batch: Vec<Row> = (0..rng.random_range(1..6))
                    .map(|_| {
                        let id = rng.random_range(0..40);
                        // Whole seconds half the time, to exercise both timestamp encodings.
                        let mut ts = now - rng.random_range(0..90) * MIN
                            + rng.random_range(-2..3) * 1_000_000;
                        if rng.random() {
                            ts += rng.random_range(0..1_000_000);
                        }
                        let created = rng.random_ratio(1, 3).then(|| rng.random_range(0..3));
                        let mut feats: Vec<usize> =
                            (0..n).filter(|_| rng.random_ratio(1, 2)).collect();
                        if feats.is_empty() {
                            feats.push(rng.random_range(0..n));
                        }
                        let values = feats
                            .into_iter()
                            .map(|f| (f, random_value(&mut rng, view.features[f].ty)))
                            .collect();
                        Row {
                            key: user_key(&s, id),
                            event_ts: ts,
                            created_ts: created,
                            values,
                        }
                    })
                    .collect();
                s.write("v", &batch).unwrap();
                for r in &batch {
                    let id =
                        match crate::decode_key(reg.entity("user").unwrap(), &r.key).unwrap()[0] {
                            crate::OwnedKeyPart::Int64(i) => i,
                            _ => unreachable!(),
                        };
                    let cells = model.entry(id).or_insert_with(|| vec![None; n]);
                    let created = r.created_ts.unwrap_or(NO_CREATED);
                    for (f, v) in &r.values {
                        let wins = match &cells[*f] {
                            None => true,
                            Some(c) => (r.event_ts, created) >= (c.ts, c.created),
                        };
                        if wins {
                            cells[*f] = Some(ModelCell {
                                value: v.clone(),
                                ts: r.event_ts,
                                created,
                            });
                        }
                    }
                }
            }
            50..=79 => {
                let ids: Vec<i64> = (0..rng.random_range(1..30))
                    .map(|_| rng.random_range(0..45))
                    .collect();
                let feats: Vec<usize> = (0..rng.random_range(1..8))
                    .map(|_| rng.random_range(0..n))
                    .collect();
                let refs: Vec<String> = feats
                    .iter()
                    .map(|f| format!("v:{}", view.features[*f].name))
                    .collect();
                let max_age = rng
                    .random_ratio(1, 4)
                    .then(|| rng.random_range(0..120) * MIN);
                let sel = s.select(&refs).unwrap();
                let opts = ReadOptions {
                    max_age,
                    ..Default::default()
                };
                s.get(&sel, &keys(&s, &ids), &opts, &mut out).unwrap();
                for (c, f) in feats.iter().enumerate() {
                    let ttl = view.feature_ttl_secs(*f) as i64 * 1_000_000;
                    let bound = match (ttl, max_age) {
                        (0, None) => None,
                        (0, Some(m)) => Some(m),
                        (t, None) => Some(t),
                        (t, Some(m)) => Some(t.min(m)),
                    };
                    for (r, id) in ids.iter().enumerate() {
                        let col = &out.columns[c];
                        let cell = model.get(id).and_then(|cells| cells[*f].as_ref());
                        let ctx = format!(
                            "seed {seed} step {step} key {id} feature {}",
                            view.features[*f].name
                        );
                        let expected = cell.map(|mc| (mc.ts, &mc.value));
                        check_cell(col, r, expected, bound.map(|b| now - b), &ctx);
                    }
                }
            }
            80..=91 => {
                now += rng.random_range(0..40) * MIN + rng.random_range(0..1_000_000);
                clock.set(now);
            }
            _ => {
                s.reclaim_all();
                model.retain(|_, cells| {
                    for (f, c) in cells.iter_mut().enumerate() {
                        let ttl = view.feature_ttl_secs(f) as i64 * 1_000_000;
                        if c.as_ref().is_some_and(|c| ttl > 0 && c.ts < now - ttl) {
                            *c = None;
                        }
                    }
                    cells.iter().any(Option::is_some)
                });
                assert_eq!(
                    s.stats()[0].entities as usize,
                    model.len(),
                    "seed {seed} step {step}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_writers_and_readers_agree_with_last_write_wins() {
    let (s, _) = store(8);
    let s = Arc::new(s);
    const KEYS: i64 = 64;
    const ROUNDS: i64 = 200;
    const WRITERS: i64 = 4;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    // Timestamps interleave across writers; each value equals its timestamp so
                    // readers can check that value and time always belong together.
                    let rows: Vec<Row> = (0..KEYS)
                        .map(|k| {
                            let ts = T0 + (round * WRITERS + w) * 1000 + k;
                            row(&s, k, ts, vec![(0, Value::Int64(ts))])
                        })
                        .rev()
                        .collect();
                    s.write("v", &rows).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let ids: Vec<i64> = (0..KEYS).collect();
                let k = keys(&s, &ids);
                let sel = s.select(&["v:count"]).unwrap();
                let mut out = GetResult::new();
                let mut last = vec![i64::MIN; KEYS as usize];
                for _ in 0..300 {
                    s.get(
                        &sel,
                        &k,
                        &ReadOptions {
                            max_age: None,
                            now: Some(T0),
                            max_variable_bytes: None,
                        },
                        &mut out,
                    )
                    .unwrap();
                    let col = &out.columns[0];
                    for (i, seen) in last.iter_mut().enumerate() {
                        if col.statuses[i] == Status::Present {
                            let ts = col.event_ts[i];
                            assert_eq!(col.values.value_at(i), Value::Int64(ts));
                            assert!(ts >= *seen, "time went backwards for key {i}");
                            *seen = ts;
                        }
                    }
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    let ids: Vec<i64> = (0..KEYS).collect();
    let cols = s
        .get_features(
            &["v:count"],
            &keys(&s, &ids),
            &ReadOptions {
                max_age: None,
                now: Some(T0),
                max_variable_bytes: None,
            },
        )
        .unwrap();
    for k in 0..KEYS {
        let newest = T0 + ((ROUNDS - 1) * WRITERS + (WRITERS - 1)) * 1000 + k;
        assert_eq!(cols[0].get(k as usize), Some(Value::Int64(newest)));
    }
}

#[test]
fn quantized_vectors_round_trip_within_bounds_and_save_memory() {
    let schema = |storage: &str| {
        format!(
            "[[entity]]\nname = \"u\"\njoin_keys = [{{ name = \"id\", type = \"int64\" }}]\n\
             [[feature_view]]\nname = \"e\"\nentity = \"u\"\n  [[feature_view.feature]]\n  \
             name = \"emb\"\n  type = \"vector<64>\"\n  storage = \"{storage}\"\n"
        )
    };
    let mut bytes = Vec::new();
    for (storage, bound) in [
        ("float32", 0.0f32),
        ("float16", 2f32.powi(-11)),
        ("bfloat16", 2f32.powi(-8)),
        ("int8", 1.0 / 254.0),
    ] {
        let reg = Registry::from_toml(&schema(storage)).unwrap();
        assert_eq!(reg.view("e").unwrap().features[0].storage.name(), storage);
        let s = Store::new(
            reg.clone(),
            StoreConfig { shards: 4 },
            Arc::new(ManualClock::new(T0)),
        )
        .unwrap();
        let entity = reg.entity("u").unwrap();
        let vecs: Vec<Vec<f32>> = (0..2000)
            .map(|i| {
                (0..64)
                    .map(|j| (((i * 64 + j) as f32) * 0.37).sin())
                    .collect()
            })
            .collect();
        let rows: Vec<Row> = vecs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut key = Vec::new();
                crate::encode_key(entity, &[KeyPart::Int64(i as i64)], &mut key).unwrap();
                Row {
                    key,
                    event_ts: T0,
                    created_ts: None,
                    values: vec![(0, Value::Vector(v.clone()))],
                }
            })
            .collect();
        s.write("e", &rows).unwrap();
        let mut kb = KeyBatch::new();
        (0..2000).for_each(|i| kb.push(entity, &[KeyPart::Int64(i)]).unwrap());
        let cols = s
            .get_features(&["e:emb"], &kb, &ReadOptions::default())
            .unwrap();
        for (i, v) in vecs.iter().enumerate() {
            let Some(Value::Vector(got)) = cols[0].get(i) else {
                panic!("row {i} missing")
            };
            let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (x, y) in v.iter().zip(&got) {
                let allowed = match storage {
                    "int8" => max * bound * 1.0001,
                    // Below float16's normal range the bound is absolute (subnormal spacing).
                    "float16" => (x.abs() * bound).max(2f32.powi(-25)),
                    _ => x.abs() * bound,
                };
                assert!((x - y).abs() <= allowed, "{storage}: {x} -> {y}");
            }
        }
        bytes.push(s.stats()[0].bytes);
        if storage == "int8" {
            let bad = Row {
                key: rows[0].key.clone(),
                event_ts: T0,
                created_ts: None,
                values: vec![(0, Value::Vector(vec![f32::NAN; 64]))],
            };
            let e = s.write("e", &[bad]).unwrap_err();
            assert!(e.to_string().contains("cannot hold NaN"), "{e}");
        }
    }
    assert!(
        bytes[1] < bytes[0] * 6 / 10,
        "float16 {} vs float32 {}",
        bytes[1],
        bytes[0]
    );
    assert!(
        bytes[3] < bytes[0] * 4 / 10,
        "int8 {} vs float32 {}",
        bytes[3],
        bytes[0]
    );
    // Storage is part of the stored meaning: changing it is refused.
    let old = Registry::from_toml(&schema("float16")).unwrap();
    let e = old
        .evolve(Registry::from_toml(&schema("int8")).unwrap())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("storage changed from float16 to int8"),
        "{e}"
    );
    let e = Registry::from_toml(&schema("float8")).unwrap_err();
    assert!(e.to_string().contains("unknown storage \"float8\""), "{e}");
}

#[test]
fn a_bounded_read_stops_once_its_variable_length_values_outgrow_the_limit() {
    let (s, _) = store(4);
    // 10 users with a 1 KiB name and a 100-item list each.
    let rows: Vec<Row> = (0..10)
        .map(|i| {
            row(
                &s,
                i,
                T0 - 1,
                vec![
                    (3, Value::String("n".repeat(1024))),
                    (4, Value::Int32List(vec![7; 100])),
                ],
            )
        })
        .collect();
    s.write("v", &rows).unwrap();
    let ids: Vec<i64> = (0..10).collect();
    let sel = s.select(&["v:name", "v:hist", "v:count"]).unwrap();
    let bounded = |limit| ReadOptions {
        max_variable_bytes: Some(limit),
        ..Default::default()
    };
    let mut out = GetResult::new();
    // 10 × (1024 + 400) bytes gathered in all: a limit just above passes, just below stops.
    s.get(&sel, &keys(&s, &ids), &bounded(14_240), &mut out)
        .unwrap();
    assert_eq!(out.columns[0].statuses, vec![Status::Present; 10]);
    let err = s
        .get(&sel, &keys(&s, &ids), &bounded(14_239), &mut out)
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::CapacityExceeded(m) if m.contains("14239")),
        "{err}"
    );
    // Fixed-width features alone are never stopped: their size is known before the read.
    let fixed = s.select(&["v:count", "v:ratio"]).unwrap();
    s.get(&fixed, &keys(&s, &ids), &bounded(0), &mut out)
        .unwrap();
}
