//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Each function feeds untrusted bytes to one decoder and checks the invariants that must hold
//! for any input: no panic, no unbounded allocation, and a successful decode re-encodes to
//! something that decodes to the same thing.

use crate::record::{self, Cell, CellState, Layout};
use crate::registry::Registry;
use crate::value::FeatureColumn;

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
        let _ = record::decode_simple_decimal(
            &self.layout,
            data,
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
