use super::*;
use crate::registry::Registry;
use crate::testing::registry;
use crate::value::FeatureColumn;

const SCHEMA: &str = include_str!("../../testdata/all-types.toml");

fn layout() -> Layout {
    let r = registry(SCHEMA);
    Layout::new(r.view("all").unwrap())
}

/// Builds a record from (feature, value, ts, created) writes applied in order.
fn build(l: &Layout, writes: &[(usize, Value, i64, i64)]) -> Vec<u8> {
    let mut cells = vec![Cell::default(); l.len()];
    let mut fresh = Vec::new();
    for (i, v, ts, cr) in writes {
        apply(l, &mut cells[*i], *i, v, *ts, *cr, &mut fresh);
    }
    let mut out = Vec::new();
    encode(l, &cells, &[], &fresh, &mut out);
    out
}

/// Decodes feature `i` of `rec` through the read path.
fn read(l: &Layout, rec: &[u8], i: usize) -> Option<(Value, i64, i64)> {
    let mut cells = Vec::new();
    parse(l, rec, &mut cells).unwrap();
    let c = cells[i];
    match c.state {
        CellState::Unwritten => None,
        CellState::Null => Some((Value::Null, c.ts, c.created)),
        CellState::Present => {
            let mut col = FeatureColumn::new(l.types[i]);
            col.reset(1);
            decode_into(l, i, &c, rec, &mut col.values, 0).unwrap();
            Some((col.values.value_at(0), c.ts, c.created))
        }
    }
}

fn samples() -> Vec<Vec<Value>> {
    vec![
        vec![
            Value::Bool(true),
            Value::Int32(i32::MIN),
            Value::Int64(i64::MAX),
            Value::Float32(f32::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::String("héllo ☃".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Timestamp(-1),
            Value::BoolList(vec![
                true, false, true, true, false, false, true, false, true,
            ]),
            Value::Int32List(vec![i32::MAX, 0, -3]),
            Value::Int64List(vec![i64::MIN, i64::MAX]),
            Value::Float32List(vec![f32::MIN_POSITIVE, -0.0, f32::NAN]),
            Value::Float64List(vec![1e300, f64::NAN]),
            Value::StringList(vec!["".into(), "a".into()]),
            Value::BytesList(vec![vec![], vec![1; 300]]),
            Value::TimestampList(vec![0, 1_700_000_000_000_000]),
            Value::Vector(vec![0.5, f32::INFINITY, f32::NAN]),
            Value::Bool(false),
        ],
        vec![
            Value::Bool(false),
            Value::Int32(0),
            Value::Int64(i64::MIN),
            Value::Float32(-0.0),
            Value::Float64(f64::MAX),
            Value::String(String::new()),
            Value::Bytes(vec![]),
            Value::Timestamp(i64::MAX),
            Value::BoolList(vec![]),
            Value::Int32List(vec![]),
            Value::Int64List(vec![]),
            Value::Float32List(vec![]),
            Value::Float64List(vec![]),
            Value::StringList(vec![]),
            Value::BytesList(vec![]),
            Value::TimestampList(vec![]),
            Value::Vector(vec![0.0, 0.0, 0.0]),
            Value::Bool(true),
        ],
    ]
}

#[test]
fn every_type_round_trips_with_extremes_and_nan() {
    let l = layout();
    for row in samples() {
        assert!(row.iter().zip(&l.types).all(|(v, t)| v.fits(*t)));
        let writes: Vec<_> = row
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, v)| (i, v, 1_700_000_000_123_456, NO_CREATED))
            .collect();
        let rec = build(&l, &writes);
        for (i, v) in row.iter().enumerate() {
            let (got, ts, cr) = read(&l, &rec, i).unwrap();
            assert!(got.bit_eq(v), "feature {i}: {got:?} != {v:?}");
            assert_eq!((ts, cr), (1_700_000_000_123_456, NO_CREATED));
        }
    }
}

#[test]
fn whole_row_write_costs_one_timestamp() {
    let l = layout();
    let ts = 1_700_000_000_000_000; // whole seconds: stored as seconds
    let writes: Vec<_> = (0..8).map(|i| (i, Value::Null, ts, NO_CREATED)).collect();
    let rec = build(&l, &writes);
    // flags + nfeat + nulls bitmap + 1 bool byte + one 5-byte timestamp, no values
    assert_eq!(rec.len(), 1 + 1 + 1 + 1 + 5, "{rec:?}");
    let vary: Vec<_> = (0..8)
        .map(|i| (i, Value::Null, ts + i as i64, NO_CREATED))
        .collect();
    assert!(build(&l, &vary).len() > rec.len() + 7);
}

#[test]
fn nulls_partial_rows_and_varying_timestamps() {
    let l = layout();
    let rec = build(
        &l,
        &[
            (2, Value::Int64(5), 100, NO_CREATED),
            (5, Value::Null, 50, 7),
            (17, Value::Bool(true), 300, 9),
            (16, Value::Vector(vec![1.0, 2.0, 3.0]), -20, NO_CREATED),
        ],
    );
    assert_eq!(read(&l, &rec, 0), None);
    assert_eq!(read(&l, &rec, 2), Some((Value::Int64(5), 100, NO_CREATED)));
    assert_eq!(read(&l, &rec, 5), Some((Value::Null, 50, 7)));
    assert_eq!(read(&l, &rec, 17), Some((Value::Bool(true), 300, 9)));
    assert_eq!(
        read(&l, &rec, 16),
        Some((Value::Vector(vec![1.0, 2.0, 3.0]), -20, NO_CREATED))
    );
    assert_eq!(read(&l, &rec, 15), None);
}

#[test]
fn last_write_wins_by_event_then_created_then_arrival() {
    let l = layout();
    let mut c = Cell::default();
    let mut fresh = Vec::new();
    // (value, event time, created time, whether it wins, why)
    for (v, ts, created, wins, why) in [
        (1, 10, NO_CREATED, true, "first write"),
        (2, 9, 100, false, "older event loses"),
        (3, 10, 5, true, "created breaks tie"),
        (4, 10, 4, false, "older created loses"),
        (5, 10, 5, true, "full tie: later arrival"),
    ] {
        let won = apply(&l, &mut c, 2, &Value::Int64(v), ts, created, &mut fresh);
        assert_eq!(won, wins, "{why}");
    }
    let mut out = Vec::new();
    encode(&l, std::slice::from_ref(&c), &[], &fresh, &mut out);
    let mut cells = vec![Cell::default(); l.len()];
    cells[2] = c;
    encode(&l, &cells, &[], &fresh, &mut out);
    assert_eq!(read(&l, &out, 2), Some((Value::Int64(5), 10, 5)));
}

#[test]
fn records_from_an_older_schema_read_as_unwritten_for_new_features() {
    let l = layout();
    let rec = build(
        &l,
        &[
            (0, Value::Bool(true), 1, NO_CREATED),
            (1, Value::Int32(2), 1, NO_CREATED),
        ],
    );
    // The same bytes under a layout with more features (features are only ever appended).
    let text = SCHEMA.replace(
        "  name = \"b2\"\n  type = \"bool\"\n",
        "  name = \"b2\"\n  type = \"bool\"\n  [[feature_view.feature]]\n  name = \"extra\"\n  type = \"string\"\n",
    );
    let r = Registry::from_toml(&text).unwrap();
    let bigger = Layout::new(r.view("all").unwrap());
    assert_eq!(
        read(&bigger, &rec, 1),
        Some((Value::Int32(2), 1, NO_CREATED))
    );
    assert_eq!(read(&bigger, &rec, 18), None);
}

#[test]
fn damaged_records_are_refused_without_panicking() {
    let l = layout();
    let row = &samples()[0];
    let writes: Vec<_> = row
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| (i, v, 7, (i as i64) * 3))
        .collect();
    let rec = build(&l, &writes);
    let mut cells = Vec::new();
    for cut in 0..rec.len() {
        assert!(
            parse(&l, &rec[..cut], &mut cells).is_err(),
            "prefix {cut} parsed"
        );
    }
    // Every single-byte corruption either fails to parse or decodes within bounds.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut bad = rec.clone();
        let at = (rng as usize) % bad.len();
        bad[at] ^= (rng >> 32) as u8 | 1;
        if parse(&l, &bad, &mut cells).is_ok() {
            for (i, c) in cells.iter().enumerate() {
                if c.state == CellState::Present {
                    let mut col = FeatureColumn::new(l.types[i]);
                    col.reset(1);
                    let _ = decode_into(&l, i, c, &bad, &mut col.values, 0);
                }
            }
        }
    }
    assert!(parse(&l, &[0x80], &mut cells).is_err());
    assert!(
        parse(&l, &[0, 200], &mut cells).is_err(),
        "more features than the view"
    );
}
