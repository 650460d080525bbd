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
