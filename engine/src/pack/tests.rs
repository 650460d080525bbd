use std::fs;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::batch::Row;
use crate::clock::ManualClock;
use crate::db::{Db, DbConfig, SnapshotBuilder};
use crate::key::{KeyBatch, KeyPart};
use crate::registry::Registry;
use crate::store::{GetResult, ReadOptions};
use crate::testing::{TempDir, T0};
use crate::value::{Value, ValueType};
use crate::wal::FsyncPolicy;

/// Every value type, in a view whose policy the test substitutes for `POLICY`, and a
/// float32 embedding view.
const SCHEMA: &str = include_str!("../../testdata/pack.toml");

fn registry(policy: &str) -> Registry {
    Registry::from_toml(&SCHEMA.replace("POLICY", policy)).unwrap()
}

fn open(dir: &Path, reg: &Registry) -> Db {
    let mut c = DbConfig::new(dir);
    c.registry = Some(reg.clone());
    c.store.shards = 4;
    c.wal.fsync = FsyncPolicy::Never;
    Db::open(c, Arc::new(ManualClock::new(T0 + 1_000_000)))
        .unwrap()
        .0
}

fn key(reg: &Registry, id: i64) -> Vec<u8> {
    let mut k = Vec::new();
    crate::encode_key(reg.entity("u").unwrap(), &[KeyPart::Int64(id)], &mut k).unwrap();
    k
}

/// A value of `ty` like real tabular features: small numbers, few distinct strings, some
/// nulls. `flavour` shifts the distribution so two data sets train different dictionaries.
fn value(rng: &mut SmallRng, ty: ValueType, flavour: i64) -> Value {
    use crate::value::ScalarType as S;
    if rng.random_ratio(1, 20) {
        return Value::Null;
    }
    let countries = ["fr", "de", "us", "jp", "br"];
    match ty {
        ValueType::Scalar(S::Int64) => Value::Int64(rng.random_range(0..50) * flavour),
        ValueType::Scalar(S::Int32) => Value::Int32(rng.random_range(-3..3)),
        ValueType::Scalar(S::Float32) => Value::Float32(rng.random_range(0..8) as f32 / 4.0),
        ValueType::Scalar(S::Float64) => Value::Float64(rng.random_range(0..100) as f64 * 0.5),
        ValueType::Scalar(S::Bool) => Value::Bool(rng.random()),
        ValueType::Scalar(S::String) => {
            Value::String(format!("{}-{flavour}", countries[rng.random_range(0..5)]))
        }
        ValueType::Scalar(S::Bytes) => Value::Bytes(vec![flavour as u8; rng.random_range(0..6)]),
        ValueType::Scalar(S::Timestamp) => {
            Value::Timestamp(T0 - rng.random_range(0..3600) * 1_000_000)
        }
        ValueType::List(S::Int64) => {
            Value::Int64List((0..rng.random_range(0..5)).map(|i| i * flavour).collect())
        }
        ValueType::List(S::String) => Value::StringList(
            (0..rng.random_range(0..3))
                .map(|i| countries[i].to_string())
                .collect(),
        ),
        ValueType::List(S::Float32) => {
            Value::Float32List((0..rng.random_range(0..4)).map(|i| i as f32).collect())
        }
        ValueType::List(S::Bool) => {
            Value::BoolList((0..rng.random_range(0..9)).map(|i| i % 3 == 0).collect())
        }
        ValueType::Vector { dim } => {
            Value::Vector((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        }
        other => panic!("no generator for {other}"),
    }
}

fn rows(
    reg: &Registry,
    view: &str,
    ids: std::ops::Range<i64>,
    seed: u64,
    flavour: i64,
) -> Vec<Row> {
    let v = reg.view(view).unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    ids.map(|id| Row {
        key: key(reg, id),
        event_ts: T0 - rng.random_range(0..100) * 1_000_000,
        created_ts: None,
        values: v
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (i, value(&mut rng, f.ty, flavour)))
            .collect(),
    })
    .collect()
}

/// Every feature of `view` for `ids`, as values (None = not found).
fn read_all(db: &Db, reg: &Registry, view: &str, ids: &[i64]) -> Vec<Vec<Option<Value>>> {
    let v = reg.view(view).unwrap();
    let refs: Vec<String> = v
        .features
        .iter()
        .map(|f| format!("{view}:{}", f.name))
        .collect();
    let sel = db.select(&refs).unwrap();
    let mut kb = KeyBatch::new();
    ids.iter().for_each(|i| kb.push_encoded(&key(reg, *i)));
    let mut out = GetResult::new();
    db.get(&sel, &kb, &ReadOptions::default(), &mut out)
        .unwrap();
    (0..ids.len())
        .map(|r| out.columns.iter().map(|c| c.get(r)).collect())
        .collect()
}

/// What the rows say each entity's features are (whole-row writes: the newest row wins).
fn expected(rows: &[Row], nfeat: usize) -> Vec<Vec<Option<Value>>> {
    rows.iter()
        .map(|r| {
            let mut out = vec![None; nfeat];
            for (i, v) in &r.values {
                out[*i] = Some(v.clone());
            }
            out
        })
        .collect()
}

fn codec_of(db: &Db, view: &str) -> CodecInfo {
    db.store()
        .stats()
        .into_iter()
        .find(|s| s.view == view)
        .and_then(|s| s.compression)
        .expect("view has a base with a codec section")
}

#[test]
fn every_type_round_trips_through_every_policy() {
    for policy in ["none", "zstd", "auto"] {
        let dir = TempDir::new(&format!("types-{policy}"));
        let reg = registry(policy);
        let db = open(dir.path(), &reg);
        let n = 3000;
        let ids: Vec<i64> = (0..n + 10).collect(); // the last 10 were never written
        for view in ["s", "e", "m"] {
            let rs = rows(&reg, view, 0..n, 7, 3);
            db.write(view, &rs).unwrap();
            let nfeat = reg.view(view).unwrap().features.len();
            let mut want = expected(&rs, nfeat);
            want.extend((0..10).map(|_| vec![None; nfeat]));
            let before = read_all(&db, &reg, view, &ids);
            assert_eq!(before, want, "{policy} {view}: delta reads");
            db.checkpoint().unwrap();
            assert_eq!(
                read_all(&db, &reg, view, &ids),
                want,
                "{policy} {view}: base reads"
            );
            // A subset, out of schema order (the single-pass decoders skip what is not asked).
            if view == "m" {
                let sel = db.select(&["m:total", "m:n", "m:share"]).unwrap();
                let mut kb = KeyBatch::new();
                ids.iter().for_each(|i| kb.push_encoded(&key(&reg, *i)));
                let mut out = GetResult::new();
                db.get(&sel, &kb, &ReadOptions::default(), &mut out)
                    .unwrap();
                for (r, row) in want.iter().enumerate() {
                    let got: Vec<Option<Value>> = out.columns.iter().map(|c| c.get(r)).collect();
                    let expect = vec![row[3].clone(), row[0].clone(), row[5].clone()];
                    assert_eq!(got, expect, "{policy} row {r}");
                }
            }
        }
        let s = codec_of(&db, "s");
        let e = codec_of(&db, "e");
        let m = codec_of(&db, "m");
        if policy == "auto" {
            assert_eq!(m.method, PackMethod::Decimal, "{m}");
        }
        eprintln!("{policy}: s: {s}\n{policy}: e: {e}");
        match policy {
            "none" => {
                assert_eq!((s.method, e.method), (PackMethod::None, PackMethod::None));
                assert_eq!((s.sample_records, s.sample_plain_bytes), (0, 0));
            }
            "zstd" => {
                assert_eq!(s.method, PackMethod::Zstd, "{s}");
                assert!(s.dict_bytes > 0 && s.dict_tag != 0, "{s}");
                assert!(s.sample_saving() > 0.2, "tabular rows compress: {s}");
                // Random floats hardly compress, but the policy says compress anyway; the
                // float view is where shuffling is tried.
                assert_ne!(e.method, PackMethod::None, "{e}");
            }
            _ => {
                assert_eq!(s.method, PackMethod::Zstd, "{s}");
                assert_eq!(e.method, PackMethod::None, "random floats do not pay: {e}");
                assert!(e.sample_saving() < 0.2, "{e}");
            }
        }
        // The files hold what the codec says: compressed records, fewer stored bytes.
        for (view, info) in [("s", &s), ("e", &e), ("m", &m)] {
            let snap_dir = dir.join(crate::fs::SNAPSHOT_DIR);
            let file = fs::read_dir(&snap_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{view}-"))
                })
                .unwrap();
            crate::Snapshot::verify(&file).unwrap();
            let snap = crate::Snapshot::open(&file).unwrap();
            let (plain, stored) = snap.record_sizes();
            let packed = snap.iter().filter(|(_, r)| is_packed(r)).count();
            if info.method == PackMethod::None {
                assert_eq!((plain, packed), (stored, 0), "{policy} {view}");
            } else {
                assert!(
                    packed > 0 && stored < plain,
                    "{policy} {view}: {stored} of {plain}"
                );
            }
        }
        // Reopening serves the same values from the compressed files.
        drop(db);
        let db = open(dir.path(), &reg);
        for view in ["s", "e", "m"] {
            let nfeat = reg.view(view).unwrap().features.len();
            let mut want = expected(&rows(&reg, view, 0..n, 7, 3), nfeat);
            want.extend((0..10).map(|_| vec![None; nfeat]));
            assert_eq!(
                read_all(&db, &reg, view, &ids),
                want,
                "{policy} {view}: after reopen"
            );
        }
    }
}

#[test]
fn dictionaries_change_between_snapshots_and_the_delta_merges_over_them() {
    let dir = TempDir::new("dict-change");
    let reg = registry("zstd");
    let db = open(dir.path(), &reg);
    let nfeat = reg.view("s").unwrap().features.len();
    let ids: Vec<i64> = (0..3000).collect();

    // Snapshot 1 from one data set.
    let first = rows(&reg, "s", 0..3000, 1, 3);
    db.write("s", &first).unwrap();
    db.checkpoint().unwrap();
    let dict1 = codec_of(&db, "s");

    // Newer values for a third of the entities stay in the (plain) delta over snapshot 1.
    let mut second = rows(&reg, "s", 0..1000, 2, 11);
    for r in &mut second {
        r.event_ts = T0 + 500_000;
    }
    db.write("s", &second).unwrap();
    let mut want = expected(&first, nfeat);
    want[..1000].clone_from_slice(&expected(&second, nfeat));
    assert_eq!(
        read_all(&db, &reg, "s", &ids),
        want,
        "delta over snapshot 1"
    );

    // Snapshot 2 merges them, re-encoding snapshot 1's records with a new dictionary.
    db.checkpoint().unwrap();
    let dict2 = codec_of(&db, "s");
    assert_eq!(read_all(&db, &reg, "s", &ids), want, "snapshot 2");

    // A bulk-loaded snapshot built from a third data set brings a third dictionary, while
    // newer delta values written before the load stay on top of it.
    let mut newest = rows(&reg, "s", 2000..2100, 4, 29);
    for r in &mut newest {
        r.event_ts = T0 + 900_000;
    }
    db.write("s", &newest).unwrap();
    let load = dir.join("load.qsnap");
    let third = rows(&reg, "s", 0..3000, 3, 7);
    let mut b = SnapshotBuilder::create(&load, &reg, "s", T0).unwrap();
    for r in &third {
        b.add(r).unwrap();
    }
    let (_, dict3) = b.finish_with_codec().unwrap();
    db.load_snapshot("s", &load).unwrap();
    let mut want = expected(&third, nfeat);
    want[2000..2100].clone_from_slice(&expected(&newest, nfeat));
    assert_eq!(
        read_all(&db, &reg, "s", &ids),
        want,
        "bulk load under the delta"
    );
    assert_eq!(codec_of(&db, "s").dict_tag, dict3.dict_tag);

    // Different data, different dictionaries (tags are a 1-in-255 check, so compare the
    // dictionaries' sizes and tags together rather than assume tags never collide).
    assert_eq!(dict1.method, PackMethod::Zstd);
    assert!(
        (dict1.dict_tag, dict1.dict_bytes) != (dict2.dict_tag, dict2.dict_bytes)
            || (dict2.dict_tag, dict2.dict_bytes) != (dict3.dict_tag, dict3.dict_bytes),
        "{dict1} / {dict2} / {dict3}"
    );
    // And one more checkpoint folds everything into a fourth.
    db.checkpoint().unwrap();
    assert_eq!(
        read_all(&db, &reg, "s", &ids),
        want,
        "after the last checkpoint"
    );
}

fn layout(reg: &Registry, view: &str) -> Layout {
    Layout::new(reg.view(view).unwrap())
}

/// Plain records of `view` as the store encodes them.
fn plain_records(reg: &Registry, view: &str, n: i64, seed: u64) -> Vec<Vec<u8>> {
    let lay = layout(reg, view);
    rows(reg, view, 0..n, seed, 3)
        .iter()
        .map(|r| {
            let mut cells = vec![Cell::default(); lay.len()];
            let mut fresh = Vec::new();
            for (i, v) in &r.values {
                record::apply(
                    &lay,
                    &mut cells[*i],
                    *i,
                    v,
                    r.event_ts,
                    crate::record::NO_CREATED,
                    &mut fresh,
                );
            }
            let mut out = Vec::new();
            record::encode(&lay, &cells, &[], &fresh, &mut out);
            out
        })
        .collect()
}

#[test]
fn auto_compresses_only_where_it_saves_a_fifth() {
    let reg = registry("auto");
    let tab = plain_records(&reg, "s", 2000, 5);
    let emb = plain_records(&reg, "e", 2000, 5);
    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|r| &r[..]).collect()
    }
    let auto = Compression::default();
    let p = plan(auto, &layout(&reg, "s"), &refs(&tab));
    assert_eq!(p.info.method, PackMethod::Zstd, "{}", p.info);
    assert!(p.info.sample_saving() >= AUTO_MIN_SAVING, "{}", p.info);
    assert!(p.packer.is_some());
    let p = plan(auto, &layout(&reg, "e"), &refs(&emb));
    assert_eq!(p.info.method, PackMethod::None, "{}", p.info);
    assert!(p.packer.is_none());
    assert!(p.info.sample_saving() < AUTO_MIN_SAVING, "{}", p.info);
    // Money and rates as short decimals: decimal coding saves a lot, decodes fast, and wins.
    let money = plain_records(&reg, "m", 2000, 5);
    let p = plan(auto, &layout(&reg, "m"), &refs(&money));
    assert_eq!(p.info.method, PackMethod::Decimal, "{}", p.info);
    assert!(p.info.sample_saving() >= 0.4, "{}", p.info);
    assert_eq!(p.info.dict_bytes, 0);
    // Asked for zstd, the view gets zstd even so.
    let zstd = Compression {
        policy: CompressionPolicy::Zstd,
        ..auto
    };
    let p = plan(zstd, &layout(&reg, "m"), &refs(&money));
    assert_eq!(p.info.method, PackMethod::Zstd, "{}", p.info);
    // Declining still records what was tried.
    assert!(
        p.info.sample_packed_bytes > 0 && p.info.decode_ns > 0,
        "{}",
        p.info
    );
    // `none` does not even look.
    let none = Compression {
        policy: CompressionPolicy::None,
        ..auto
    };
    let p = plan(none, &layout(&reg, "s"), &refs(&tab));
    assert_eq!((p.info.method, p.info.decode_ns), (PackMethod::None, 0));
    // The section round-trips through its parser.
    let c = Codec::from_section(&plan(auto, &layout(&reg, "s"), &refs(&tab)).section).unwrap();
    assert_eq!(c.info().method, PackMethod::Zstd);
}

#[test]
fn shuffling_round_trips_at_every_width() {
    let mut rng = SmallRng::seed_from_u64(9);
    for _ in 0..500 {
        let width = [2, 4, 8][rng.random_range(0..3)];
        let src: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let mut planes = Vec::new();
        shuffle_into(&src, width, &mut planes);
        assert_eq!(planes.len(), src.len());
        let mut back = vec![7u8; 3];
        unshuffle_into(&planes, width, &mut back);
        assert_eq!(&back[3..], &src[..]);
    }
}

/// A packed record claiming `raw_len`, around `frame`.
fn envelope(marker: u8, tag: u8, raw_len: u64, frame: &[u8]) -> Vec<u8> {
    let mut r = vec![marker, tag];
    put_varint(&mut r, raw_len);
    r.extend_from_slice(frame);
    r
}

fn frame_of(data: &[u8]) -> Vec<u8> {
    let mut p = Packer::new(PackMethod::Zstd, 0, &[], 3, usize::MAX).unwrap();
    let mut f = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    p.cctx.as_mut().unwrap().compress2(&mut f, data).unwrap();
    f
}

#[test]
fn hostile_packed_records_fail_cleanly_and_allocate_no_more_than_the_schema_allows() {
    let mut dctx = Dctx::default();
    let mut out = Vec::new();
    let reg = registry("zstd");
    // The embedding view has a fixed bound from its schema (a 32-float vector and a head).
    let emb = layout(&reg, "e");
    let bound = emb.max_record_len().unwrap();
    assert!((128..200).contains(&bound), "{bound}");
    let err = |r: &[u8], dctx: &mut Dctx, out: &mut Vec<u8>| {
        unpack(None, r, Some(&emb), dctx, out).unwrap_err().0
    };

    // A bomb: 1 MiB of zeros compresses to a few bytes. Claiming its true size is refused
    // before anything is allocated; claiming a small size fails inside zstd.
    let bomb = frame_of(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 200);
    assert!(err(&envelope(PACKED, 0, 1 << 20, &bomb), &mut dctx, &mut out).contains("cannot have"));
    assert!(
        err(&envelope(PACKED, 0, 150, &bomb), &mut dctx, &mut out).contains("does not decompress")
    );
    assert!(
        out.capacity() <= 4096,
        "the bomb never got room: {}",
        out.capacity()
    );
    // A frame shorter than it claims.
    let small = frame_of(b"abcdefgh");
    assert!(err(&envelope(PACKED, 0, 20, &small), &mut dctx, &mut out).contains("shorter"));
    // The right length decodes.
    let ok = envelope(PACKED, 0, 8, &small);
    assert_eq!(
        unpack(None, &ok, Some(&emb), &mut dctx, &mut out).unwrap(),
        b"abcdefgh"
    );
    // A dictionary nobody holds, a zero length, unknown marker bits, shuffling without a
    // width, a decimal record longer than the bound or without a schema to decode it.
    assert!(err(&envelope(PACKED, 9, 8, &small), &mut dctx, &mut out).contains("dictionary"));
    assert!(err(&envelope(PACKED, 0, 0, &small), &mut dctx, &mut out).contains("cannot have"));
    assert!(
        err(&envelope(PACKED | 0x10, 0, 8, &small), &mut dctx, &mut out).contains("not a packed")
    );
    let mut shuffled = vec![PACKED | SHUFFLED, 0, 8, 2];
    shuffled.extend_from_slice(&small);
    assert!(err(&shuffled, &mut dctx, &mut out).contains("does not shuffle"));
    let mut decimal = vec![PACKED | DECIMAL];
    put_varint(&mut decimal, bound as u64 + 1);
    assert!(err(&decimal, &mut dctx, &mut out).contains("cannot have"));
    let no_schema = unpack(
        None,
        &[PACKED | DECIMAL, 4, 0, 0, 0, 0],
        None,
        &mut dctx,
        &mut out,
    );
    assert!(no_schema.unwrap_err().0.contains("schema"));

    // Every truncation and random damage of real packed records, with each method: an error
    // or a record within the bound, never a panic.
    let recs = plain_records(&reg, "s", 500, 3);
    let lay = layout(&reg, "s");
    let refs: Vec<&[u8]> = recs.iter().map(|r| &r[..]).collect();
    let mut rng = SmallRng::seed_from_u64(11);
    for method in [PackMethod::Zstd, PackMethod::Decimal] {
        let (codec, mut packer) = forced(method, &lay, &refs).unwrap();
        let mut packed_some = 0;
        for raw in recs.iter().take(100) {
            let mut packed = Vec::new();
            if !packer.pack(&lay, raw, &mut packed) {
                continue;
            }
            packed_some += 1;
            let back = codec.unpack(&packed, Some(&lay), &mut dctx, &mut out);
            assert_eq!(back.unwrap(), &raw[..], "{method:?}");
            for cut in 0..packed.len() {
                let _ = codec.unpack(&packed[..cut], Some(&lay), &mut dctx, &mut out);
            }
            for _ in 0..50 {
                let mut bad = packed.clone();
                let at = rng.random_range(0..bad.len());
                bad[at] ^= 1 << rng.random_range(0..8);
                if let Ok(r) = codec.unpack(&bad, Some(&lay), &mut dctx, &mut out) {
                    assert!(r.len() <= MAX_PACKED_RAW);
                }
            }
        }
        assert!(packed_some > 50, "{method:?}: {packed_some} of 100 packed");
    }
}

fn plain_total(recs: &[Vec<u8>]) -> usize {
    recs.iter().map(Vec::len).sum()
}

/// Not a test: a measurement aid for choosing zstd settings for small records
/// (`cargo test --release -p quiver-engine -- --ignored zstd_settings --nocapture`).
#[test]
#[ignore]
fn zstd_settings_for_small_records() {
    use zstd_safe::{DParameter as DP, ParamSwitch};
    let reg = Registry::from_toml(include_str!("../../../examples/registry.toml")).unwrap();
    let view = reg.view("user_stats").unwrap();
    let lay = Layout::new(view);
    let mut rng = SmallRng::seed_from_u64(1);
    let countries = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "SE", "NG", "MX"];
    let recs: Vec<Vec<u8>> = (0..100_000)
        .map(|_| {
            let mut cells = vec![Cell::default(); lay.len()];
            let mut fresh = Vec::new();
            let ts = (1_700_000_000 - rng.random_range(0..86_400)) * 1_000_000;
            let mut amount = 0.0;
            for (i, f) in view.features.iter().enumerate() {
                use crate::value::ScalarType as S;
                let v = match f.ty {
                    ValueType::Scalar(S::Int64) | ValueType::Scalar(S::Int32) => {
                        let n = if rng.random_ratio(1, 2) {
                            0
                        } else {
                            rng.random_range(0..200)
                        };
                        if f.ty == ValueType::Scalar(S::Int32) {
                            Value::Int32(n as i32)
                        } else {
                            Value::Int64(n)
                        }
                    }
                    ValueType::Scalar(S::Float32) => Value::Float32(if rng.random_ratio(1, 3) {
                        0.0
                    } else {
                        rng.random::<f32>().powi(2)
                    }),
                    ValueType::Scalar(S::Float64) => {
                        amount = ((rng.random::<f64>() * 6.0).exp() * 100.0).round() / 100.0;
                        Value::Float64(amount)
                    }
                    ValueType::Scalar(S::String) => {
                        Value::String(countries[rng.random_range(0..10)].into())
                    }
                    ValueType::Scalar(S::Bool) => Value::Bool(rng.random_ratio(1, 4)),
                    _ => Value::Null,
                };
                let _ = amount;
                record::apply(
                    &lay,
                    &mut cells[i],
                    i,
                    &v,
                    ts,
                    crate::record::NO_CREATED,
                    &mut fresh,
                );
            }
            let mut out = Vec::new();
            record::encode(&lay, &cells, &[], &fresh, &mut out);
            out
        })
        .collect();
    let plain: usize = recs.iter().map(Vec::len).sum();
    // Decimal coding, then zstd with a dictionary trained on decimal-coded records.
    {
        let refs: Vec<&[u8]> = recs[..4096].iter().map(|r| &r[..]).collect();
        let (_, mut dec) = forced(PackMethod::Decimal, &lay, &refs).unwrap();
        let coded: Vec<Vec<u8>> = recs
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                if dec.pack(&lay, r, &mut out) {
                    out
                } else {
                    r.clone()
                }
            })
            .collect();
        let dsz: usize = coded.iter().map(Vec::len).sum();
        let sample: Vec<u8> = coded[..4096].concat();
        let sizes: Vec<usize> = coded[..4096].iter().map(Vec::len).collect();
        let dict = zstd::dict::from_continuous(&sample, &sizes, 16384).unwrap();
        let ddict = DDict::try_create(&dict).unwrap();
        let mut c = CCtx::create();
        c.set_parameter(CParameter::CompressionLevel(3)).unwrap();
        c.set_parameter(CParameter::Format(FrameFormat::Magicless))
            .unwrap();
        c.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
        c.set_parameter(CParameter::ChecksumFlag(false)).unwrap();
        c.set_parameter(CParameter::DictIdFlag(false)).unwrap();
        c.load_dictionary(&dict).unwrap();
        let eval = &coded[4096..24096];
        let frames: Vec<Vec<u8>> = eval
            .iter()
            .map(|r| {
                let mut f = Vec::with_capacity(zstd_safe::compress_bound(r.len()));
                c.compress2(&mut f, r).unwrap();
                f
            })
            .collect();
        let packed: usize = frames
            .iter()
            .zip(eval)
            .map(|(f, r)| (f.len() + 3).min(r.len()))
            .sum();
        let raw: usize = recs[4096..24096].iter().map(Vec::len).sum();
        let mut d = DCtx::create();
        d.set_parameter(zstd_safe::DParameter::Format(FrameFormat::Magicless))
            .unwrap();
        let mut buf = vec![0u8; 512];
        let t = Instant::now();
        for (f, r) in frames.iter().zip(eval) {
            d.decompress_using_ddict(&mut buf[..r.len()], f, &ddict)
                .unwrap();
        }
        println!(
            "decimal alone: {:.3} of plain; decimal then zstd (dict 16 KiB, level 3): {:.3} of plain, {:.0} ns/record for the zstd part",
            dsz as f64 / plain_total(&recs) as f64,
            packed as f64 / raw as f64,
            t.elapsed().as_nanos() as f64 / frames.len() as f64
        );
    }
    println!(
        "{} records, {:.1} plain bytes each",
        recs.len(),
        plain as f64 / recs.len() as f64
    );
    let sample: Vec<u8> = recs[..4096].concat();
    let sizes: Vec<usize> = recs[..4096].iter().map(Vec::len).collect();
    for dict_len in [0usize, 2048, 4096, 16384] {
        let dict = if dict_len == 0 {
            Vec::new()
        } else {
            zstd::dict::from_continuous(&sample, &sizes, dict_len).unwrap()
        };
        let ddict = DDict::try_create(&dict).unwrap();
        for level in [1, 3, 9, 19] {
            for raw_literals in [false, true] {
                let mut c = CCtx::create();
                c.set_parameter(CParameter::CompressionLevel(level))
                    .unwrap();
                c.set_parameter(CParameter::Format(FrameFormat::Magicless))
                    .unwrap();
                c.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
                c.set_parameter(CParameter::ChecksumFlag(false)).unwrap();
                c.set_parameter(CParameter::DictIdFlag(false)).unwrap();
                if raw_literals {
                    c.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Disable))
                        .unwrap();
                }
                if !dict.is_empty() {
                    c.load_dictionary(&dict).unwrap();
                }
                let frames: Vec<Vec<u8>> = recs[4096..24096]
                    .iter()
                    .map(|r| {
                        let mut f = Vec::with_capacity(zstd_safe::compress_bound(r.len()));
                        c.compress2(&mut f, r).unwrap();
                        f
                    })
                    .collect();
                let packed: usize = frames.iter().map(|f| f.len() + 3).sum();
                let raw: usize = recs[4096..24096].iter().map(Vec::len).sum();
                let mut d = DCtx::create();
                d.set_parameter(DP::Format(FrameFormat::Magicless)).unwrap();
                let mut buf = vec![0u8; 512];
                let mut best = u128::MAX;
                for _ in 0..3 {
                    let t = Instant::now();
                    for (f, r) in frames.iter().zip(&recs[4096..24096]) {
                        let n = if dict.is_empty() {
                            d.decompress(&mut buf[..r.len()], f).unwrap()
                        } else {
                            d.decompress_using_ddict(&mut buf[..r.len()], f, &ddict)
                                .unwrap()
                        };
                        assert_eq!(n, r.len());
                    }
                    best = best.min(t.elapsed().as_nanos());
                }
                println!(
                    "dict {dict_len:>5} level {level:>2} raw-literals {raw_literals:5}: {:.3} of plain, {:.0} ns/record",
                    packed as f64 / raw as f64,
                    best as f64 / frames.len() as f64
                );
            }
        }
    }
}
