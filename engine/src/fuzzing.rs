//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Each function feeds untrusted bytes to one decoder and checks the invariants that must hold
//! for any input: no panic, no unbounded allocation, and a successful decode re-encodes to
//! something that decodes to the same thing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::record::{self, Cell, CellState, Layout};
use crate::registry::Registry;
use crate::value::FeatureColumn;

/// The example registry, the schema the record and packed-record targets decode against.
pub fn example_registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(
        || match Registry::from_toml(include_str!("../../examples/registry.toml")) {
            Ok(r) => r,
            Err(e) => panic!("the example registry is invalid: {e}"),
        },
    )
}

/// The `record` target: the first byte picks a view of the example registry, the rest is
/// the record.
pub fn record_target(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let views = example_registry().views();
    let view = &views[usize::from(which) % views.len()].name;
    record(example_registry(), view, rest);
}

/// Parses `data` as a record of view `view` of `registry` and decodes every present value.
pub fn record(registry: &Registry, view: &str, data: &[u8]) {
    let Some(v) = registry.view(view) else {
        return;
    };
    let layout = Layout::new(v);
    let mut cells: Vec<Cell> = Vec::new();
    if record::parse(&layout, data, &mut cells).is_err() {
        return;
    }
    for (i, c) in cells.iter().enumerate() {
        if c.state == CellState::Present {
            let mut col = FeatureColumn::new(layout.types[i]);
            col.reset(1);
            let _ = record::decode_into(&layout, i, c, data, &mut col.values, 0);
        }
    }
    // Re-encoding what parsed must parse to the same cells.
    let mut again = Vec::new();
    record::encode(&layout, &cells, data, &[], &mut again);
    let mut cells2 = Vec::new();
    assert!(
        record::parse(&layout, &again, &mut cells2).is_ok(),
        "re-encoded record did not parse"
    );
    for (a, b) in cells.iter().zip(&cells2) {
        assert_eq!((a.state, a.ts, a.created), (b.state, b.ts, b.created));
    }
}

/// Decodes `data` as a logged write batch.
pub fn batch(data: &[u8]) {
    if let Ok(b) = crate::batch::decode_batch(data) {
        let mut again = Vec::new();
        crate::batch::encode_batch(&b.view, &b.rows, &mut again);
        let b2 = crate::batch::decode_batch(&again);
        assert!(b2.is_ok(), "re-encoded batch did not decode");
    }
}

/// The WAL segment scanner on `data` as a segment file's contents: it must report damage,
/// never panic or allocate without bound.
pub fn wal_segment(data: &[u8]) {
    let _ = crate::inspect::WalSegmentInfo::scan(Path::new("00000000000000000001.log"), data);
}

/// Where [`snapshot_open`] writes its input: one file per process, in memory when `/dev/shm`
/// exists (the opener maps a file, so the input has to be one).
fn snapshot_scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("quiver-fuzz-{}.qsnap", std::process::id()))
    })
}

/// Opens `data` as a snapshot file: open must refuse anything damaged before it is used;
/// whatever it accepts must be readable end to end, and if it also verifies, consistent.
pub fn snapshot_open(data: &[u8]) {
    let path = snapshot_scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(snap) = crate::Snapshot::open(path) {
        // Whatever open accepted must be safe to read, even if verify would object.
        let mut keys = 0usize;
        for (key, _record) in snap.iter() {
            let _ = snap.get(key);
            keys += 1;
        }
        if crate::Snapshot::verify(path).is_ok() {
            assert_eq!(
                keys,
                snap.len(),
                "a verified snapshot iterates every entity"
            );
            for (key, record) in snap.iter() {
                assert_eq!(
                    snap.get(key),
                    Some(record),
                    "a verified snapshot finds its own keys"
                );
            }
        }
    }
}

/// The `packed_record` target's codecs: the example registry's first view, with a dictionary
/// trained on repetitive records. Records of the view's shape are not needed for a dictionary
/// to exist, and hostile frames are the point.
pub fn packed_target() -> PackedTarget {
    let registry = example_registry();
    let samples: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mut r = vec![0x20, 3, (i % 7) as u8];
            r.extend_from_slice(&(1_700_000_000u32 + i % 100).to_le_bytes());
            r.extend(std::iter::repeat_n((i % 13) as u8, (i % 40) as usize));
            r
        })
        .collect();
    let refs: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
    match PackedTarget::new(registry, &registry.views()[0].name, &refs) {
        Some(t) => t,
        None => panic!("the example registry has no first view"),
    }
}

/// Codecs for view `view` of `registry`: a zstd one whose dictionary was trained on a sample
/// of its records, and the decimal one (for the packed-record target; build once, it trains
/// a dictionary).
pub struct PackedTarget {
    layout: Layout,
    methods: Vec<(crate::pack::Codec, crate::pack::Packer)>,
}

impl std::fmt::Debug for PackedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedTarget")
    }
}

impl PackedTarget {
    /// Trains on `samples` (records of `view`); `None` if the view is unknown.
    pub fn new(registry: &Registry, view: &str, samples: &[&[u8]]) -> Option<Self> {
        let layout = Layout::new(registry.view(view)?);
        let methods = [
            crate::pack::PackMethod::Zstd,
            crate::pack::PackMethod::Decimal,
        ]
        .into_iter()
        .filter_map(|m| crate::pack::forced(m, &layout, samples))
        .collect();
        Some(Self { layout, methods })
    }

    /// Decodes `data` as a packed record with every codec: no panic, and output never beyond
    /// the schema's bound. Then, structure-aware: packs the tail of `data` as a plain record,
    /// damages the packed form where the head says, and decodes that (undamaged, it must
    /// round-trip).
    pub fn run(&mut self, data: &[u8]) {
        let bound = crate::pack::packed_bound(Some(&self.layout));
        let mut dctx = crate::pack::Dctx::default();
        let mut out = Vec::new();
        let layout = Some(&self.layout);
        for (codec, _) in &self.methods {
            if let Ok(plain) = codec.unpack(data, layout, &mut dctx, &mut out) {
                assert!(plain.len() <= bound, "decoded past the schema's bound");
                let mut cells = Vec::new();
                let _ = record::parse(&self.layout, plain, &mut cells);
            }
        }
        // The read path's single-pass decoder of decimal bodies, on the same bytes.
        let n = self.layout.len();
        let mut columns: Vec<FeatureColumn> = self
            .layout
            .types
            .iter()
            .map(|&t| {
                let mut c = FeatureColumn::new(t);
                c.reset(1);
                c
            })
            .collect();
        let wanted: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
        let _ = record::decode_simple(
            &self.layout,
            data,
            true,
            &wanted,
            &vec![i64::MIN; n],
            &mut columns,
            0,
        );
        let Some((&n, rest)) = data.split_first() else {
            return;
        };
        let edits = usize::from(n % 5);
        if rest.len() < 2 * edits || self.methods.is_empty() {
            return;
        }
        let (head, plain) = rest.split_at(2 * edits);
        let which = usize::from(n / 5) % self.methods.len();
        let (codec, packer) = &mut self.methods[which];
        let mut packed = Vec::new();
        if plain.is_empty() || !packer.pack(&self.layout, plain, &mut packed) {
            return;
        }
        if edits == 0 {
            let back = codec.unpack(&packed, layout, &mut dctx, &mut out);
            assert_eq!(back.ok(), Some(plain), "a packed record did not round-trip");
            return;
        }
        for e in head.chunks_exact(2) {
            let at = usize::from(e[0]) % packed.len();
            packed[at] ^= e[1];
        }
        if let Ok(got) = codec.unpack(&packed, layout, &mut dctx, &mut out) {
            assert!(got.len() <= bound, "decoded past the schema's bound");
        }
    }
}

/// Fuzz input read as a stream of choices, for structure-aware targets: each read takes bytes
/// from the front, and an exhausted input reads as zeros, so every input builds something.
/// The targets and the regression tests decode the same bytes the same way, which is why this
/// lives here rather than in an `arbitrary` derive in the fuzz crate.
#[derive(Debug)]
pub struct Source<'a> {
    data: &'a [u8],
}

impl<'a> Source<'a> {
    /// Reads choices from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte (0 once the input is exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A choice in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let v = if n <= 256 {
            usize::from(self.byte())
        } else {
            usize::from(u16::from_le_bytes([self.byte(), self.byte()]))
        };
        v % n
    }

    /// A yes/no choice.
    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A choice that is usually no (one in eight): for options that mostly make a document
    /// invalid, so that most documents still get past validation.
    pub fn rarely(&mut self) -> bool {
        self.byte() < 32
    }

    /// One of `items` (`None` if there are none).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        items.get(self.below(items.len()))
    }

    /// An integer: usually one of the edge values that break arithmetic, otherwise any.
    pub fn int(&mut self) -> i64 {
        const EDGES: [i64; 8] = [0, 1, -1, 2, i64::MIN, i64::MAX, i32::MIN as i64, 1 << 53];
        let b = self.byte();
        if usize::from(b) < EDGES.len() * 16 {
            return EDGES[usize::from(b) % EDGES.len()];
        }
        let mut v = [0u8; 8];
        for x in &mut v {
            *x = self.byte();
        }
        i64::from_le_bytes(v)
    }

    /// Up to `max` raw bytes (a length byte, then that many bytes, fewer if the input ends).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A string of up to `max` bytes (invalid UTF-8 replaced).
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// One of `words` most of the time, otherwise a fuzzed string: names must mostly match
    /// what the schema knows for a target to get past the first lookup.
    pub fn word(&mut self, words: &[&str]) -> String {
        match self.pick(words) {
            Some(w) if self.byte() < 240 => (*w).to_owned(),
            _ => self.text(24),
        }
    }
}

/// Parses `text` as a registry; whatever parses must render to TOML that parses back to an
/// equal registry, and rendering is a fixed point.
fn registry_round_trip(text: &str) -> Option<Registry> {
    let reg = Registry::from_toml(text).ok()?;
    let rendered = reg.to_toml();
    let again = match Registry::from_toml(&rendered) {
        Ok(r) => r,
        Err(e) => panic!("a rendered registry did not parse: {e}\n{rendered}"),
    };
    assert_eq!(reg, again, "a rendered registry parsed to a different one");
    assert_eq!(again.to_toml(), rendered, "rendering is not a fixed point");
    Some(reg)
}

/// Checks two registries against each other the way `quiver apply` does: what `next` would
/// remove, and whether it may replace `old`; an evolved registry is valid and keeps `next`'s
/// contents.
fn registry_pair(old: &Registry, next: &Registry) {
    let removals = old.removals(next);
    let gone = |name: &str| removals.iter().any(|r| r.contains(name));
    for v in old.views() {
        if next.view(&v.name).is_none() {
            assert!(gone(&v.name), "removal of view {:?} not reported", v.name);
        }
    }
    if let Ok(evolved) = old.evolve(next.clone()) {
        assert_eq!(evolved.views().len(), next.views().len());
        for v in next.views() {
            let e = evolved.view(&v.name);
            assert!(
                e.is_some_and(|e| e.features.len() == v.features.len()),
                "evolve lost features of view {:?}",
                v.name
            );
        }
        let back = registry_round_trip(&evolved.to_toml());
        assert_eq!(
            back.as_ref(),
            Some(&evolved),
            "an evolved registry does not re-parse"
        );
    }
    let kept = next.clone().keeping(old);
    assert!(kept.views().len() >= next.views().len());
}

/// Registry TOML from fuzz input: two registries separated by a NUL byte, each parsed and
/// round-tripped, then the second evolved from the first.
pub fn registry_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\0').unwrap_or((text, ""));
    let old = registry_round_trip(a);
    let next = registry_round_trip(b);
    if let (Some(old), Some(next)) = (old, next) {
        registry_pair(&old, &next);
    }
}

/// Structure-aware: builds two registry-shaped TOML documents from fuzz input (names from a
/// small pool so references resolve, every type and option spelling, fuzzed strings mixed
/// in) and checks them like [`registry_text`].
pub fn registry_shaped(data: &[u8]) {
    let mut src = Source::new(data);
    let a = registry_document(&mut src);
    let b = registry_document(&mut src);
    let old = registry_round_trip(&a);
    let next = registry_round_trip(&b);
    if let (Some(old), Some(next)) = (old, next) {
        registry_pair(&old, &next);
    }
}

const ENTITY_NAMES: &[&str] = &["user", "item", "pair"];
const KEY_NAMES: &[&str] = &["user_id", "item_id", "region"];
const VIEW_NAMES: &[&str] = &["stats", "embeddings", "stats_v2"];
const FEATURE_NAMES: &[&str] = &["count", "ratio", "tags", "vec", "seen_at"];
const TYPES: &[&str] = &[
    "bool",
    "int32",
    "int64",
    "float32",
    "float64",
    "string",
    "bytes",
    "timestamp",
    "list<int64>",
    "list<string>",
    "list<timestamp>",
    "vector<3>",
    "vector<0>",
    "vector<65537>",
    " int64 ",
    "list<vector<2>>",
    "list<>",
];
const TTLS: &[&str] = &[
    "1d",
    "2h",
    "90d",
    "0",
    "0s",
    "1w",
    "-1d",
    "18446744073709551615s",
];
const STORAGES: &[&str] = &["float32", "float16", "bfloat16", "int8", "int4"];
const COMPRESSIONS: &[&str] = &["auto", "zstd", "none", "lz4"];

/// A TOML string literal (fuzzed text must not break the document's syntax).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn ttl_value(src: &mut Source<'_>) -> String {
    if src.rarely() {
        src.int().to_string()
    } else {
        quoted(&src.word(TTLS))
    }
}

fn registry_document(src: &mut Source<'_>) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    if src.flag() {
        let _ = writeln!(t, "project = {}", quoted(&src.word(&["demo"])));
    }
    for _ in 0..=src.below(3) {
        let _ = writeln!(t, "[[entity]]\nname = {}", quoted(&src.word(ENTITY_NAMES)));
        let keys: Vec<String> = (0..=src.below(3))
            .map(|_| {
                format!(
                    "{{ name = {}, type = {} }}",
                    quoted(&src.word(KEY_NAMES)),
                    quoted(&src.word(&["int64", "string"]))
                )
            })
            .collect();
        let _ = writeln!(t, "join_keys = [{}]", keys.join(", "));
        if src.flag() {
            let _ = writeln!(t, "description = {}", quoted(&src.text(16)));
        }
    }
    for _ in 0..=src.below(3) {
        let _ = writeln!(
            t,
            "[[feature_view]]\nname = {}\nentity = {}",
            quoted(&src.word(VIEW_NAMES)),
            quoted(&src.word(ENTITY_NAMES))
        );
        if src.flag() {
            let _ = writeln!(t, "ttl = {}", ttl_value(src));
        }
        if src.flag() {
            let _ = writeln!(t, "compression = {}", quoted(&src.word(COMPRESSIONS)));
        }
        if src.flag() {
            let _ = writeln!(t, "compression_level = {}", src.below(22));
        }
        if src.flag() {
            let _ = writeln!(
                t,
                "tags = {{ {} = {} }}",
                quoted(&src.text(8)),
                quoted(&src.text(8))
            );
        }
        if src.flag() {
            let _ = writeln!(
                t,
                "source = {{ path = {}, timestamp_field = {} }}",
                quoted(&src.text(16)),
                quoted(&src.word(&["event_timestamp"]))
            );
        }
        for _ in 0..src.below(5) {
            let _ = writeln!(
                t,
                "  [[feature_view.feature]]\n  name = {}\n  type = {}",
                quoted(&src.word(FEATURE_NAMES)),
                quoted(&src.word(TYPES))
            );
            if src.flag() {
                let _ = writeln!(t, "  ttl = {}", ttl_value(src));
            }
            if src.rarely() {
                let _ = writeln!(t, "  storage = {}", quoted(&src.word(STORAGES)));
            }
            if src.flag() {
                let _ = writeln!(t, "  column = {}", quoted(&src.word(FEATURE_NAMES)));
            }
        }
    }
    for _ in 0..src.below(3) {
        let refs: Vec<String> = (0..src.below(4))
            .map(|_| {
                let r = format!("{}:{}", src.word(VIEW_NAMES), src.word(FEATURE_NAMES));
                quoted(&r)
            })
            .collect();
        let _ = writeln!(
            t,
            "[[feature_service]]\nname = {}\nfeatures = [{}]",
            quoted(&src.word(&["scoring", "ranking"])),
            refs.join(", ")
        );
    }
    t
}

/// The files of a regression directory (`fuzz/regressions/<target>/`), each an input that
/// once crashed the target, sorted by name; dot files and READMEs are not inputs. A missing
/// directory is an error, so a renamed target cannot silently skip its regressions.
pub fn regression_inputs(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.starts_with("README") || !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path)?;
        out.push((path, data));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(target: &str, mut run: impl FnMut(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions")
            .join(target);
        let inputs = regression_inputs(&dir)
            .unwrap_or_else(|e| panic!("regressions of {target} ({}): {e}", dir.display()));
        for (path, data) in inputs {
            eprintln!("replaying {}", path.display());
            run(&data);
        }
    }

    #[test]
    fn every_regression_input_still_passes() {
        replay("record", record_target);
        replay("batch", batch);
        replay("wal_segment", wal_segment);
        replay("snapshot_open", snapshot_open);
        let mut packed = packed_target();
        replay("packed_record", |d| packed.run(d));
        replay("registry", registry_text);
        replay("registry_shaped", registry_shaped);
    }

    /// The structure-aware registry target is only worth its name if the documents it builds
    /// get past the parser: pseudo-random inputs must reach valid registries with features,
    /// and registries the validator refuses.
    #[test]
    fn shaped_registries_reach_validation() {
        let (mut valid, mut refused) = (0, 0);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let input: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let doc = registry_document(&mut Source::new(&input));
            match Registry::from_toml(&doc) {
                Ok(r) if r.views().iter().any(|v| !v.features.is_empty()) => valid += 1,
                Ok(_) => {}
                Err(_) => refused += 1,
            }
        }
        assert!(valid > 0, "no shaped registry with a feature parsed");
        assert!(refused > 0, "every shaped registry parsed");
    }
}
