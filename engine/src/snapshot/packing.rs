//! [`PackingWriter`]: a snapshot whose records are compressed as the view's policy decides
//! (`crate::pack` owns the compression; this module only feeds it the sample and stores what
//! it returns).

use std::path::Path;

use super::{SnapshotInfo, SnapshotMeta, SnapshotWriter};
use crate::pack::{plan, CodecInfo, Packer, SAMPLE_BYTES, SAMPLE_RECORDS};
use crate::record::Layout;
use crate::registry::Compression;

/// Entries held back while sampling: keys and records concatenated, and their lengths.
type Sample = (Vec<u8>, Vec<(usize, usize)>);

/// Writes one view's snapshot with its records compressed as the view's policy decides.
/// The first records added are held back (up to [`SAMPLE_RECORDS`] / [`SAMPLE_BYTES`]) as
/// the sample the decision and the dictionary come from; everything after streams through.
#[derive(Debug)]
pub(crate) struct PackingWriter {
    writer: SnapshotWriter,
    layout: Layout,
    compression: Compression,
    /// `Some` while sampling.
    sample: Option<Sample>,
    packer: Option<Packer>,
    packed: Vec<u8>,
    info: Option<CodecInfo>,
}

impl PackingWriter {
    /// Starts a snapshot at `path` for records encoded with `layout`.
    pub(crate) fn create(
        path: &Path,
        meta: SnapshotMeta,
        layout: Layout,
        compression: Compression,
    ) -> crate::Result<Self> {
        Ok(Self {
            writer: SnapshotWriter::create(path, meta)?,
            layout,
            compression,
            sample: Some((Vec::new(), Vec::new())),
            packer: None,
            packed: Vec::new(),
            info: None,
        })
    }

    /// Adds one entity's plain record.
    pub(crate) fn add(&mut self, key: &[u8], record: &[u8]) -> crate::Result<()> {
        let Some((bytes, lens)) = &mut self.sample else {
            return self.write(key, record);
        };
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(record);
        lens.push((key.len(), record.len()));
        if lens.len() >= SAMPLE_RECORDS || bytes.len() >= SAMPLE_BYTES {
            self.decide()?;
        }
        Ok(())
    }

    /// Decides from the sample, writes the codec section, then the sampled entries.
    fn decide(&mut self) -> crate::Result<()> {
        let Some((bytes, lens)) = self.sample.take() else {
            return Ok(());
        };
        let mut entries = Vec::with_capacity(lens.len());
        let mut at = 0;
        for (klen, rlen) in lens {
            entries.push((&bytes[at..at + klen], &bytes[at + klen..at + klen + rlen]));
            at += klen + rlen;
        }
        let records: Vec<&[u8]> = entries.iter().map(|e| e.1).collect();
        let plan = plan(self.compression, &self.layout, &records);
        self.writer.set_codec(&plan.section)?;
        self.packer = plan.packer;
        self.info = Some(plan.info);
        for (key, record) in entries {
            self.write(key, record)?;
        }
        Ok(())
    }

    fn write(&mut self, key: &[u8], record: &[u8]) -> crate::Result<()> {
        let packed = match &mut self.packer {
            Some(p) => p.pack(&self.layout, record, &mut self.packed),
            None => false,
        };
        if packed {
            self.writer.add(key, &self.packed)
        } else {
            self.writer.add(key, record)
        }
    }

    /// See [`SnapshotWriter::note_event_ts`].
    pub(crate) fn note_event_ts(&mut self, ts: crate::Micros) {
        self.writer.note_event_ts(ts);
    }

    /// Entities added so far.
    pub(crate) fn len(&self) -> usize {
        self.writer.len() + self.sample.as_ref().map_or(0, |s| s.1.len())
    }

    /// Publishes the file, and says how its records were stored.
    pub(crate) fn finish(mut self) -> crate::Result<(SnapshotInfo, CodecInfo)> {
        self.decide()?;
        let info = self.writer.finish()?;
        // `decide` ran (here or earlier), so the plan's facts are known.
        let codec = self.info.take().ok_or_else(|| {
            crate::EngineError::InvalidArgument("snapshot finished before it was planned".into())
        })?;
        Ok((info, codec))
    }
}
