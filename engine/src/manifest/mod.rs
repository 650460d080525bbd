//! The manifest: which snapshot serves each view, the registry in force at the last
//! checkpoint, and the WAL sequence the snapshots include. Replaced atomically.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  89 51 56 4D 41 4E 49 0A  ("\x89QVMANI\n")
//! 8       4     format version (1)
//! 12      4     payload length (<= 64 MiB)
//! 16      4     crc32 of the payload
//! 20      4     crc32 of bytes 0..20
//! 24      n     payload: UTF-8 TOML (human-readable on purpose: operators read it)
//! ```

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs::{corrupt, io_err, manifest_temp, write_durably, MANIFEST_FILE};
use crate::{EngineError, Result};

const MAGIC: [u8; 8] = *b"\x89QVMANI\n";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const MAX_PAYLOAD: usize = 64 << 20;

/// The snapshot currently serving one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewSnapshot {
    /// View name.
    pub view: String,
    /// Snapshot file name, relative to the data directory.
    pub file: String,
}

/// The durable state of a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Every WAL record with a sequence number at or below this is included in the snapshots.
    pub checkpoint_seq: u64,
    /// Incremented on every registry change.
    pub registry_version: u64,
    /// The registry as canonical TOML (see [`crate::Registry::to_toml`]).
    pub registry: String,
    /// Wall-clock time of the last checkpoint, microseconds (0 = never).
    pub checkpoint_micros: i64,
    /// First sequence number (= file name) of the WAL segment the log continued in after
    /// `checkpoint_seq`: it, or a segment starting after it and at most at
    /// `checkpoint_seq + 1`, must exist. Absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_segment: Option<u64>,
    /// One entry per view that has a snapshot.
    #[serde(default)]
    pub snapshots: Vec<ViewSnapshot>,
}

impl Manifest {
    /// Reads the manifest of `dir`; `Ok(None)` if the directory has none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        Self::decode(&path, &bytes).map(Some)
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(
                path,
                0,
                format!("file is {} bytes, shorter than its header", bytes.len()),
            ));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt(path, 0, "not a Quiver manifest (bad magic)"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let header_crc = crc32fast::hash(&bytes[..20]);
        if u32_at(20) != header_crc {
            return Err(corrupt(
                path,
                20,
                format!(
                    "header checksum mismatch: stored {:#010x}, computed {header_crc:#010x}",
                    u32_at(20)
                ),
            ));
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(EngineError::UnsupportedVersion {
                file: path.display().to_string(),
                found: version,
                supported: VERSION,
            });
        }
        let len = u32_at(12) as usize;
        if len > MAX_PAYLOAD || HEADER_LEN + len != bytes.len() {
            return Err(corrupt(
                path,
                12,
                format!(
                    "payload length {len} does not match the file size {}",
                    bytes.len()
                ),
            ));
        }
        let payload = &bytes[HEADER_LEN..];
        let crc = crc32fast::hash(payload);
        if u32_at(16) != crc {
            return Err(corrupt(
                path,
                HEADER_LEN as u64,
                format!(
                    "payload checksum mismatch: stored {:#010x}, computed {crc:#010x}",
                    u32_at(16)
                ),
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            corrupt(
                path,
                HEADER_LEN as u64 + e.valid_up_to() as u64,
                "payload is not UTF-8",
            )
        })?;
        toml::from_str(text).map_err(|e| corrupt(path, HEADER_LEN as u64, format!("payload: {e}")))
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let payload = toml::to_string(self)
            .map_err(|e| EngineError::InvalidArgument(format!("manifest: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload.as_bytes()).to_le_bytes());
        let hc = crc32fast::hash(&out);
        out.extend_from_slice(&hc.to_le_bytes());
        out.extend_from_slice(payload.as_bytes());
        Ok(out)
    }

    /// Replaces the manifest of `dir` atomically: temp file, fsync, rename, fsync directory.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let bytes = self.encode()?;
        let tmp = manifest_temp(dir);
        let path = dir.join(MANIFEST_FILE);
        write_durably(&tmp, &path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn sample() -> Manifest {
        Manifest {
            checkpoint_seq: 42,
            registry_version: 3,
            registry: "project = \"x\"\n".into(),
            checkpoint_micros: 1_700_000_000_000_000,
            wal_segment: Some(40),
            snapshots: vec![ViewSnapshot {
                view: "v".into(),
                file: "snapshots/v-42.qsnap".into(),
            }],
        }
    }

    #[test]
    fn round_trips_and_replaces() {
        let dir = TempDir::new("manifest");
        let d = dir.path();
        assert_eq!(Manifest::load(d).unwrap(), None);
        sample().store(d).unwrap();
        assert_eq!(Manifest::load(d).unwrap(), Some(sample()));
        let mut m = sample();
        m.checkpoint_seq = 99;
        m.store(d).unwrap();
        assert_eq!(Manifest::load(d).unwrap().unwrap().checkpoint_seq, 99);
        assert!(!d.join("MANIFEST.tmp").exists());
    }

    #[test]
    fn manifests_written_before_wal_segment_still_load() {
        let legacy = Manifest {
            wal_segment: None,
            ..sample()
        };
        let bytes = legacy.encode().unwrap();
        // Exactly what an older build wrote: the key is absent, not empty.
        assert!(!String::from_utf8_lossy(&bytes).contains("wal_segment"));
        assert_eq!(
            Manifest::decode(Path::new("MANIFEST"), &bytes).unwrap(),
            legacy
        );
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused() {
        let bytes = sample().encode().unwrap();
        let p = Path::new("MANIFEST");
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(p, &bytes[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let e = Manifest::decode(p, &bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    EngineError::Corrupt { .. } | EngineError::UnsupportedVersion { .. }
                ),
                "byte {i}: {e:?}"
            );
        }
        let mut newer = bytes.clone();
        newer[8] = 2;
        let hc = crc32fast::hash(&newer[..20]);
        newer[20..24].copy_from_slice(&hc.to_le_bytes());
        assert!(matches!(
            Manifest::decode(p, &newer),
            Err(EngineError::UnsupportedVersion { found: 2, .. })
        ));
    }
}
