//! Building a snapshot file from rows, outside a running store (the offline module's
//! materializer, tests, tools).

use std::path::Path;

use super::schema_fingerprint;
use crate::batch::Row;
use crate::clock::Micros;
use crate::pack::CodecInfo;
use crate::record::{self, Cell, Layout, NO_CREATED};
use crate::registry::Registry;
use crate::snapshot::PackingWriter;
use crate::snapshot::{SnapshotInfo, SnapshotMeta};
use crate::{EngineError, Result};

/// Writes one view's snapshot from whole rows, one row per entity, encoding records exactly as
/// the store does and compressing them as the view's policy decides. Memory stays bounded:
/// records stream to the file after the first few thousand (the compression sample).
#[derive(Debug)]
pub struct SnapshotBuilder {
    writer: PackingWriter,
    registry: Registry,
    view: usize,
    layout: Layout,
    cells: Vec<Cell>,
    fresh: Vec<u8>,
    encoded: Vec<u8>,
}

impl SnapshotBuilder {
    /// Starts a snapshot of `view` at `path` (published atomically by [`Self::finish`]).
    pub fn create(
        path: &Path,
        registry: &Registry,
        view: &str,
        created_at: Micros,
    ) -> Result<Self> {
        let vi = registry
            .view_index(view)
            .ok_or_else(|| EngineError::NotFound(format!("no feature view named {view:?}")))?;
        let v = &registry.views()[vi];
        let meta = SnapshotMeta {
            view: view.to_owned(),
            schema_fingerprint: schema_fingerprint(v, v.features.len()),
            sequence: 0,
            created_at,
        };
        Ok(Self {
            writer: PackingWriter::create(path, meta, Layout::new(v), v.compression)?,
            registry: registry.clone(),
            view: vi,
            layout: Layout::new(v),
            cells: Vec::new(),
            fresh: Vec::new(),
            encoded: Vec::new(),
        })
    }

    /// Adds one entity's row (validated like a write). Each entity may be added once.
    pub fn add(&mut self, row: &Row) -> Result<()> {
        let v = &self.registry.views()[self.view];
        let entity = self
            .registry
            .view_entity(v)
            .ok_or_else(|| EngineError::NotFound(format!("view {:?} has no entity", v.name)))?;
        crate::store::validate_row(v, entity, self.writer.len(), row)?;
        self.cells.clear();
        self.cells.resize(self.layout.len(), Cell::default());
        self.fresh.clear();
        let created = row.created_ts.unwrap_or(NO_CREATED);
        for (fi, value) in &row.values {
            record::apply(
                &self.layout,
                &mut self.cells[*fi],
                *fi,
                value,
                row.event_ts,
                created,
                &mut self.fresh,
            );
        }
        record::encode(
            &self.layout,
            &self.cells,
            &[],
            &self.fresh,
            &mut self.encoded,
        );
        self.writer.note_event_ts(row.event_ts);
        self.writer.add(&row.key, &self.encoded)
    }

    /// Entities added so far.
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.writer.len() == 0
    }

    /// Publishes the file (temp, fsync, rename, directory fsync).
    pub fn finish(self) -> Result<SnapshotInfo> {
        Ok(self.finish_with_codec()?.0)
    }

    /// Like [`Self::finish`], also saying how the records were compressed and why.
    pub fn finish_with_codec(self) -> Result<(SnapshotInfo, CodecInfo)> {
        self.writer.finish()
    }
}
