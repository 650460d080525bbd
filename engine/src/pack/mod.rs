//! Record compression for snapshots: zstd with a dictionary trained per view, or a lossless
//! decimal coding of float values, chosen per snapshot from a sample of the view's own
//! records, and a bounded decoder for the read path.
//!
//! A packed record replaces a plain one byte for byte in a snapshot's record region:
//!
//! ```text
//! marker     u8       0x80 PACKED, | 0x40 SHUFFLED (plain records' flags never set 0x80)
//! dict tag   u8       which dictionary it was compressed with (0 = none; see `dict_tag`)
//! raw length varint   length of the plain record (1 ..= the view's bound)
//! shuffle at varint   if SHUFFLED: where the byte-shuffled part of the plain record starts
//! frame      ...      one zstd frame, magicless, without checksum, content size or dict id
//! ```
//!
//! A record packed with the decimal method is instead `0xA0` (PACKED | DECIMAL), the plain
//! length as a varint, and the record with its scalar floats decimal-coded
//! (`record::decimal`): no zstd, no dictionary, and a decode that is a few divisions.
//!
//! Byte-shuffling (for views made mostly of floats) stores the bytes after `shuffle at` as
//! planes: every value's first byte, then every second byte, and so on at the view's float
//! width, with any remainder at the end. Exponent bytes then sit together, which is the only
//! part of a float zstd can do anything with.
//!
//! The codec section a snapshot carries (see [`CodecInfo`] for the meaning) is:
//!
//! ```text
//! 0   1  section version (1)
//! 1   1  policy asked: 0 none, 1 zstd, 2 auto
//! 2   1  method used: 0 none (records are plain), 1 zstd, 2 zstd with byte-shuffle,
//!        3 decimal
//! 3   1  shuffle width: 0, 2, 4 or 8
//! 4   1  zstd level, i8
//! 5   1  dictionary tag (0 = no dictionary)
//! 6   2  reserved, zero
//! 8   4  records measured u32 (the sample's held-out part; 0 with policy none)
//! 12  4  decode ns per measured record u32
//! 16  8  their plain bytes u64
//! 24  8  their packed bytes u64 (method used, or the best tried when auto declined)
//! 32  4  dictionary length D u32 (<= MAX_DICT_LEN)
//! 36  D  dictionary (zstd format)
//! ```
//!
//! Only snapshots hold packed records. The in-memory delta keeps records plain: every write
//! re-encodes its entity's record, and compressing on each one would put the cost on the
//! write path for records a checkpoint is about to fold into a (packed) snapshot anyway.

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Instant;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DDict, DParameter, FrameFormat};

use crate::encoding::{get_varint, put_varint};
use crate::record::{self, Cell, Layout, Malformed};
use crate::registry::{Compression, CompressionPolicy};

const PACKED: u8 = 0x80;
const SHUFFLED: u8 = 0x40;
const DECIMAL: u8 = 0x20;

/// Largest plain record a packed record may claim to expand to when the schema itself does
/// not bound records (strings, bytes, lists). Longer records are stored plain.
pub(crate) const MAX_PACKED_RAW: usize = 256 << 10;
/// The most bytes a packed record of a view with schema `layout` may expand to: the schema's
/// own bound when every feature has a fixed maximum size, and never more than
/// [`MAX_PACKED_RAW`] (also the bound when the schema is not known).
pub(crate) fn packed_bound(layout: Option<&Layout>) -> usize {
    layout
        .and_then(Layout::max_record_len)
        .unwrap_or(MAX_PACKED_RAW)
        .min(MAX_PACKED_RAW)
}

/// Largest dictionary a codec section may hold.
pub(crate) const MAX_DICT_LEN: usize = 112 << 10;
/// Largest dictionary trained. Records are small; a bigger dictionary mostly costs cache.
const TRAIN_DICT_LEN: usize = 16 << 10;
/// Records and bytes sampled for the decision and the dictionary.
pub(crate) const SAMPLE_RECORDS: usize = 4096;
pub(crate) const SAMPLE_BYTES: usize = 1 << 20;
/// Too little to train a useful dictionary on; below it zstd runs without one.
const MIN_TRAIN_BYTES: usize = 2 << 10;
const MIN_TRAIN_RECORDS: usize = 16;
/// `auto` compresses only when it saves at least this share of the bytes ...
const AUTO_MIN_SAVING: f64 = 0.20;
/// ... and a record decodes within this budget: a guard against pathological records (100 of
/// them would add 2 ms to a batch); the records measured so far decode in 0.1-1 µs.
const AUTO_MAX_DECODE_NS: u32 = 20_000;

const SECTION_VERSION: u8 = 1;
const SECTION_FIXED: usize = 36;

/// Whether `rec` is a packed record (else a plain one).
#[inline]
pub(crate) fn is_packed(rec: &[u8]) -> bool {
    rec.first().is_some_and(|b| b & PACKED != 0)
}

/// How a snapshot's records are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMethod {
    /// Plain records.
    None,
    /// zstd, with the section's dictionary if it has one.
    Zstd,
    /// zstd after byte-shuffling the value bytes at the float width.
    ZstdShuffled,
    /// Scalar floats written as short decimals; no zstd.
    Decimal,
}

impl PackMethod {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::ZstdShuffled => "zstd+shuffle",
            Self::Decimal => "decimal",
        }
    }
}

/// What a snapshot says about how its records are compressed and why: the policy the view
/// asked for, what was used, and the figures the decision was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecInfo {
    /// The view's policy when the snapshot was built.
    pub policy: CompressionPolicy,
    /// What the records use.
    pub method: PackMethod,
    /// zstd level used or tried.
    pub level: i32,
    /// Shuffle width in bytes (0 = no shuffle).
    pub shuffle_width: u8,
    /// Dictionary tag (0 = no dictionary).
    pub dict_tag: u8,
    /// Dictionary size in bytes.
    pub dict_bytes: u32,
    /// Sampled records the methods were measured on (held out from dictionary training
    /// once the sample is large enough; 0 with policy `none`).
    pub sample_records: u32,
    /// Their plain size.
    pub sample_plain_bytes: u64,
    /// Their size packed with the best method tried (even when `auto` declined it).
    pub sample_packed_bytes: u64,
    /// Time to decode one sampled record with that method, in nanoseconds, on the machine
    /// that built the snapshot.
    pub decode_ns: u32,
}

impl CodecInfo {
    /// Share of the sample's bytes the best method tried saves (0 when nothing was tried).
    pub fn sample_saving(&self) -> f64 {
        saving(self.sample_plain_bytes, self.sample_packed_bytes)
    }

    fn encode(&self, dict: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SECTION_FIXED + dict.len());
        out.push(SECTION_VERSION);
        out.push(match self.policy {
            CompressionPolicy::None => 0,
            CompressionPolicy::Zstd => 1,
            CompressionPolicy::Auto => 2,
        });
        out.push(match self.method {
            PackMethod::None => 0,
            PackMethod::Zstd => 1,
            PackMethod::ZstdShuffled => 2,
            PackMethod::Decimal => 3,
        });
        out.push(self.shuffle_width);
        out.push(self.level as i8 as u8);
        out.push(self.dict_tag);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.sample_records.to_le_bytes());
        out.extend_from_slice(&self.decode_ns.to_le_bytes());
        out.extend_from_slice(&self.sample_plain_bytes.to_le_bytes());
        out.extend_from_slice(&self.sample_packed_bytes.to_le_bytes());
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        out.extend_from_slice(dict);
        out
    }
}

impl fmt::Display for CodecInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {}, method {}, level {}",
            self.policy.name(),
            self.method.name(),
            self.level
        )?;
        if self.shuffle_width > 0 {
            write!(f, ", shuffle width {}", self.shuffle_width)?;
        }
        write!(f, ", dictionary {} bytes", self.dict_bytes)?;
        if self.sample_records > 0 {
            write!(
                f,
                "; {} held-out records: {} -> {} bytes ({:.1} % saved), {} ns to decode one",
                self.sample_records,
                self.sample_plain_bytes,
                self.sample_packed_bytes,
                100.0 * self.sample_saving(),
                self.decode_ns
            )?;
        }
        Ok(())
    }
}

/// The tag records use to name `dict`: 1..=255, from its checksum. Tags are not unique in
/// general; they catch a record read with another dictionary than its own (a reader holds
/// one dictionary per layer), which would otherwise decode to garbage or fail obscurely.
fn dict_tag(dict: &[u8]) -> u8 {
    (crc32fast::hash(dict) % 255) as u8 + 1
}

/// A snapshot's decoding side: its section's facts and the dictionary, prepared once.
pub(crate) struct Codec {
    info: CodecInfo,
    ddict: Option<DDict<'static>>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec").field("info", &self.info).finish()
    }
}

impl Codec {
    /// Parses and validates a codec section. `Err` describes what is wrong with it.
    pub(crate) fn from_section(s: &[u8]) -> Result<Self, String> {
        if s.len() < SECTION_FIXED {
            return Err(format!("codec section of {} bytes is too short", s.len()));
        }
        if s[0] != SECTION_VERSION {
            return Err(format!(
                "codec section version {} is not supported (this build reads {SECTION_VERSION}); \
                 upgrade Quiver",
                s[0]
            ));
        }
        let policy = match s[1] {
            0 => CompressionPolicy::None,
            1 => CompressionPolicy::Zstd,
            2 => CompressionPolicy::Auto,
            p => return Err(format!("unknown compression policy {p}")),
        };
        let method = match s[2] {
            0 => PackMethod::None,
            1 => PackMethod::Zstd,
            2 => PackMethod::ZstdShuffled,
            3 => PackMethod::Decimal,
            m => return Err(format!("unknown compression method {m}")),
        };
        let shuffle_width = s[3];
        let width_ok = match method {
            PackMethod::ZstdShuffled => matches!(shuffle_width, 2 | 4 | 8),
            _ => shuffle_width == 0,
        };
        if !width_ok {
            return Err(format!(
                "shuffle width {shuffle_width} does not fit method {}",
                method.name()
            ));
        }
        if s[6..8] != [0, 0] {
            return Err("reserved codec section bytes are not zero".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&s[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let dict_len = u32_at(32) as usize;
        if dict_len > MAX_DICT_LEN || SECTION_FIXED + dict_len != s.len() {
            return Err(format!(
                "dictionary length {dict_len} does not match a {}-byte codec section",
                s.len()
            ));
        }
        let dict = &s[SECTION_FIXED..];
        let dict_tag = s[5];
        let ddict = if dict.is_empty() {
            if dict_tag != 0 {
                return Err("codec section names a dictionary it does not hold".into());
            }
            None
        } else {
            if self::dict_tag(dict) != dict_tag {
                return Err("dictionary does not match its tag".into());
            }
            Some(DDict::try_create(dict).ok_or("zstd refused the dictionary")?)
        };
        Ok(Self {
            info: CodecInfo {
                policy,
                method,
                level: i32::from(s[4] as i8),
                shuffle_width,
                dict_tag,
                dict_bytes: dict_len as u32,
                sample_records: u32_at(8),
                decode_ns: u32_at(12),
                sample_plain_bytes: u64_at(16),
                sample_packed_bytes: u64_at(24),
            },
            ddict,
        })
    }

    pub(crate) fn info(&self) -> &CodecInfo {
        &self.info
    }

    /// Decodes packed record `rec` of a view with schema `layout` into `out` and returns
    /// it (see [`unpack`]).
    pub(crate) fn unpack<'a>(
        &self,
        rec: &[u8],
        layout: Option<&Layout>,
        dctx: &mut Dctx,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], Malformed> {
        unpack(Some(self), rec, layout, dctx, out)
    }
}

/// Decodes packed record `rec` of a view with schema `layout` into `out` (resized to exactly
/// its plain length, which must be at most the schema's bound) and returns it. A frame that
/// would expand past that length fails inside zstd: nothing larger is ever allocated.
/// With no codec, only records packed without a dictionary decode; with no layout (tools
/// that check a file without its registry), decimal-coded records do not decode and the
/// bound is [`MAX_PACKED_RAW`].
pub(crate) fn unpack<'a>(
    codec: Option<&Codec>,
    rec: &[u8],
    layout: Option<&Layout>,
    dctx: &mut Dctx,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], Malformed> {
    let bound = packed_bound(layout);
    let (&marker, rest) = rec.split_first().ok_or(Malformed("empty record"))?;
    if marker == PACKED | DECIMAL {
        let layout = layout.ok_or(Malformed("a decimal-coded record needs its view's schema"))?;
        let mut pos = 0;
        let raw_len = get_varint(rest, &mut pos).ok_or(Malformed("truncated packed record"))?;
        if raw_len == 0 || raw_len > bound as u64 {
            return Err(Malformed(
                "packed record claims a length its view cannot have",
            ));
        }
        record::decimal_unpack(layout, &rest[pos..], &mut dctx.cells, raw_len as usize, out)?;
        if out.len() as u64 != raw_len {
            return Err(Malformed("packed record is shorter than it claims"));
        }
        return Ok(&out[..]);
    }
    if marker & PACKED == 0 || marker & !(PACKED | SHUFFLED) != 0 {
        return Err(Malformed("not a packed record"));
    }
    let mut pos = 1;
    let &tag = rest.first().ok_or(Malformed("truncated packed record"))?;
    pos += 1;
    let raw_len = get_varint(rec, &mut pos).ok_or(Malformed("truncated packed record"))?;
    if raw_len == 0 || raw_len > bound as u64 {
        return Err(Malformed(
            "packed record claims a length its view cannot have",
        ));
    }
    let raw_len = raw_len as usize;
    let shuffle_at = if marker & SHUFFLED != 0 {
        let at = get_varint(rec, &mut pos).ok_or(Malformed("truncated packed record"))?;
        if at >= raw_len as u64 {
            return Err(Malformed("shuffle start is past the record's end"));
        }
        Some(at as usize)
    } else {
        None
    };
    let width = codec.map_or(0, |c| c.info.shuffle_width as usize);
    if shuffle_at.is_some() && width == 0 {
        return Err(Malformed(
            "shuffled record in a snapshot that does not shuffle",
        ));
    }
    let ddict = match (tag, codec) {
        (0, _) => None,
        (t, Some(c)) if t == c.info.dict_tag && c.ddict.is_some() => c.ddict.as_ref(),
        _ => {
            return Err(Malformed(
                "record names a dictionary its snapshot does not hold",
            ))
        }
    };
    let Dctx { ctx, scratch, .. } = dctx;
    let ctx = Dctx::ready(ctx).ok_or(Malformed("zstd could not allocate a decoder"))?;
    // A shuffled record decompresses to scratch first and is unshuffled into `out`.
    let dst = if shuffle_at.is_some() {
        &mut *scratch
    } else {
        &mut *out
    };
    dst.clear();
    dst.resize(raw_len, 0);
    let frame = &rec[pos..];
    let got = match ddict {
        Some(d) => ctx.decompress_using_ddict(&mut dst[..], frame, d),
        None => ctx.decompress(&mut dst[..], frame),
    };
    match got {
        Ok(n) if n == raw_len => {}
        Ok(_) => return Err(Malformed("packed record is shorter than it claims")),
        Err(_) => return Err(Malformed("packed record does not decompress")),
    }
    if let Some(at) = shuffle_at {
        out.clear();
        out.extend_from_slice(&scratch[..at]);
        unshuffle_into(&scratch[at..], width, out);
    }
    Ok(&out[..])
}

/// [`unpack`] with this thread's decoder: the server builds a fresh result per request, and
/// a zstd decoder is a ~100 KB allocation, so it lives with the (long-lived) worker thread.
pub(crate) fn unpack_here<'a>(
    codec: Option<&Codec>,
    rec: &[u8],
    layout: &Layout,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], Malformed> {
    thread_local! {
        static DCTX: std::cell::RefCell<Dctx> = std::cell::RefCell::new(Dctx::default());
    }
    DCTX.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => unpack(codec, rec, Some(layout), &mut d, out),
        // Only reachable re-entrantly, which nothing does; stay correct regardless.
        Err(_) => unpack(codec, rec, Some(layout), &mut Dctx::default(), out),
    })
}

/// Whether `rec` is a decimal-coded record.
#[inline]
pub(crate) fn is_decimal(rec: &[u8]) -> bool {
    rec.first() == Some(&(PACKED | DECIMAL))
}

/// The decimal-coded body of `rec` if it is a decimal-coded record (after its marker and
/// plain length), for readers that decode it without unpacking.
#[inline]
pub(crate) fn decimal_body(rec: &[u8]) -> Option<&[u8]> {
    if !is_decimal(rec) {
        return None;
    }
    let mut pos = 1;
    get_varint(rec, &mut pos)?;
    rec.get(pos..)
}

/// The plain length a packed record claims, without decompressing it (`None` for a plain
/// record).
pub(crate) fn packed_raw_len(rec: &[u8]) -> Option<u64> {
    if !is_packed(rec) {
        return None;
    }
    let mut pos = if is_decimal(rec) { 1 } else { 2 };
    get_varint(rec, &mut pos)
}

/// A reusable zstd decoder, created on first use (most reads never need one), with the
/// scratch buffer unshuffling needs.
#[derive(Default)]
pub(crate) struct Dctx {
    ctx: Option<DCtx<'static>>,
    scratch: Vec<u8>,
    cells: Vec<Cell>,
}

impl fmt::Debug for Dctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ctx.is_some() {
            "Dctx(ready)"
        } else {
            "Dctx(unused)"
        })
    }
}

impl Dctx {
    fn ready<'a>(ctx: &'a mut Option<DCtx<'static>>) -> Option<&'a mut DCtx<'static>> {
        if ctx.is_none() {
            let mut d = DCtx::try_create()?;
            d.set_parameter(DParameter::Format(FrameFormat::Magicless))
                .ok()?;
            *ctx = Some(d);
        }
        ctx.as_mut()
    }
}

fn shuffle_into(src: &[u8], width: usize, out: &mut Vec<u8>) {
    let n = src.len() / width;
    for b in 0..width {
        out.extend((0..n).map(|e| src[e * width + b]));
    }
    out.extend_from_slice(&src[n * width..]);
}

/// Inverse of [`shuffle_into`]: appends the plain bytes of `planes` to `out`.
fn unshuffle_into(planes: &[u8], width: usize, out: &mut Vec<u8>) {
    let n = planes.len() / width;
    let start = out.len();
    out.resize(start + n * width, 0);
    let dst = &mut out[start..];
    for b in 0..width {
        for (e, &byte) in planes[b * n..(b + 1) * n].iter().enumerate() {
            dst[e * width + b] = byte;
        }
    }
    out.extend_from_slice(&planes[n * width..]);
}

/// The write side: compresses plain records for one snapshot.
pub(crate) struct Packer {
    /// The zstd compressor (none for the decimal method, which does not use zstd).
    cctx: Option<CCtx<'static>>,
    method: PackMethod,
    width: usize,
    tag: u8,
    bound: usize,
    cells: Vec<Cell>,
    shuffled: Vec<u8>,
    frame: Vec<u8>,
}

impl fmt::Debug for Packer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packer")
            .field("method", &self.method)
            .field("tag", &self.tag)
            .finish()
    }
}

impl Packer {
    fn new(
        method: PackMethod,
        width: usize,
        dict: &[u8],
        level: i32,
        bound: usize,
    ) -> Option<Self> {
        let cctx = if method == PackMethod::Decimal {
            None
        } else {
            let mut cctx = CCtx::try_create()?;
            for p in [
                CParameter::CompressionLevel(level),
                CParameter::Format(FrameFormat::Magicless),
                CParameter::ContentSizeFlag(false),
                CParameter::ChecksumFlag(false),
                CParameter::DictIdFlag(false),
            ] {
                cctx.set_parameter(p).ok()?;
            }
            if !dict.is_empty() {
                cctx.load_dictionary(dict).ok()?;
            }
            Some(cctx)
        };
        Some(Self {
            cctx,
            method,
            width,
            tag: if dict.is_empty() { 0 } else { dict_tag(dict) },
            bound,
            cells: Vec::new(),
            shuffled: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Packs plain record `raw` into `out` and returns true, or returns false when packing
    /// would not make it smaller (or it is too long to pack): store `raw` as it is then.
    pub(crate) fn pack(&mut self, layout: &Layout, raw: &[u8], out: &mut Vec<u8>) -> bool {
        if raw.is_empty() || raw.len() > self.bound {
            return false;
        }
        if self.method == PackMethod::Decimal {
            out.clear();
            out.push(PACKED | DECIMAL);
            put_varint(out, raw.len() as u64);
            return matches!(record::decimal_pack(layout, raw, &mut self.cells, out), Ok(n) if n > 0)
                && out.len() < raw.len();
        }
        let mut marker = PACKED;
        let mut shuffle_at = None;
        let src = if self.method == PackMethod::ZstdShuffled {
            match record::parse_head(layout, raw, &mut self.cells).map(|h| h.values) {
                Ok(at) if raw.len() - at >= 2 * self.width => {
                    self.shuffled.clear();
                    self.shuffled.extend_from_slice(&raw[..at]);
                    shuffle_into(&raw[at..], self.width, &mut self.shuffled);
                    marker |= SHUFFLED;
                    shuffle_at = Some(at);
                    &self.shuffled[..]
                }
                _ => raw,
            }
        } else {
            raw
        };
        self.frame.clear();
        self.frame.reserve(zstd_safe::compress_bound(src.len()));
        let Some(cctx) = self.cctx.as_mut() else {
            return false;
        };
        if cctx.compress2(&mut self.frame, src).is_err() {
            return false;
        }
        out.clear();
        out.push(marker);
        out.push(self.tag);
        put_varint(out, raw.len() as u64);
        if let Some(at) = shuffle_at {
            put_varint(out, at as u64);
        }
        out.extend_from_slice(&self.frame);
        out.len() < raw.len()
    }
}

/// What a snapshot writer does with one view's records: the section to store and, unless
/// records stay plain, the packer.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) section: Vec<u8>,
    pub(crate) packer: Option<Packer>,
    pub(crate) info: CodecInfo,
}

/// One candidate method tried on the sample.
struct Trial {
    method: PackMethod,
    width: usize,
    dict: Vec<u8>,
    /// The held-out records' plain and packed bytes.
    plain_bytes: u64,
    packed_bytes: u64,
    decode_ns: u32,
}

/// The share of `plain` bytes that packing to `packed` bytes saves (0 for nothing).
fn saving(plain: u64, packed: u64) -> f64 {
    if plain == 0 {
        0.0
    } else {
        1.0 - packed as f64 / plain as f64
    }
}

/// Splits the sample into the records a dictionary is trained on and the records every
/// method is measured on. Measuring on records the dictionary has seen flatters it (by a
/// few points, enough to flip a decision at the threshold), so every fourth record is held
/// out once the sample is big enough to spare them.
fn split<'s>(sample: &[&'s [u8]]) -> (Vec<&'s [u8]>, Vec<&'s [u8]>) {
    if sample.len() < 4 * MIN_TRAIN_RECORDS {
        return (sample.to_vec(), sample.to_vec());
    }
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, r) in sample.iter().enumerate() {
        if i % 4 == 3 {
            eval.push(*r);
        } else {
            train.push(*r);
        }
    }
    (train, eval)
}

/// Decides how to store a view's records from `sample` (plain records, as many as
/// [`SAMPLE_RECORDS`] / [`SAMPLE_BYTES`] allow) under `compression`.
///
/// `zstd` uses the smaller of zstd and (for float-heavy views) zstd with byte-shuffle.
/// `auto` also tries decimal coding of floats, keeps the methods that save at least
/// [`AUTO_MIN_SAVING`] of the held-out records' bytes within the decode budget, and of
/// those takes the fastest to decode among the ones within 5 % of the smallest output.
pub(crate) fn plan(compression: Compression, layout: &Layout, sample: &[&[u8]]) -> Plan {
    let bound = packed_bound(Some(layout));
    // Until something is measured, the figures are zero.
    let mut info = CodecInfo {
        policy: compression.policy,
        method: PackMethod::None,
        level: compression.level,
        shuffle_width: 0,
        dict_tag: 0,
        dict_bytes: 0,
        sample_records: 0,
        sample_plain_bytes: 0,
        sample_packed_bytes: 0,
        decode_ns: 0,
    };
    let plain = |info: CodecInfo| Plan {
        section: info.encode(&[]),
        packer: None,
        info,
    };
    if compression.policy == CompressionPolicy::None || sample.is_empty() {
        return plain(info);
    }
    let (train, eval) = split(sample);
    info.sample_records = eval.len() as u32;
    info.sample_plain_bytes = eval.iter().map(|r| r.len() as u64).sum();
    info.sample_packed_bytes = info.sample_plain_bytes;
    let level = compression.level;
    let mut trials = Vec::new();
    let mut try_method = |method, width| {
        if let Some(t) = trial(method, width, level, layout, bound, &train, &eval) {
            trials.push(t);
        }
    };
    try_method(PackMethod::Zstd, 0);
    if let Some(w) = layout.float_width() {
        try_method(PackMethod::ZstdShuffled, w);
    }
    if compression.policy == CompressionPolicy::Auto && layout.has_scalar_floats() {
        try_method(PackMethod::Decimal, 0);
    }
    let chosen = match compression.policy {
        CompressionPolicy::Auto => {
            let eligible: Vec<&Trial> = trials
                .iter()
                .filter(|t| {
                    saving(t.plain_bytes, t.packed_bytes) >= AUTO_MIN_SAVING
                        && t.decode_ns <= AUTO_MAX_DECODE_NS
                })
                .collect();
            let smallest = eligible.iter().map(|t| t.packed_bytes).min();
            eligible
                .into_iter()
                .filter(|t| smallest.is_some_and(|m| t.packed_bytes as f64 <= m as f64 * 1.05))
                .min_by_key(|t| t.decode_ns)
        }
        _ => trials.iter().min_by_key(|t| t.packed_bytes),
    };
    let Some(best) = chosen.or_else(|| trials.iter().min_by_key(|t| t.packed_bytes)) else {
        return plain(info);
    };
    // The figures are those of the method used, or of the best one tried when none is.
    info.sample_packed_bytes = best.packed_bytes;
    info.decode_ns = best.decode_ns;
    if chosen.is_none() {
        return plain(info);
    }
    let Some(packer) = Packer::new(best.method, best.width, &best.dict, level, bound) else {
        return plain(info);
    };
    info.method = best.method;
    info.shuffle_width = best.width as u8;
    info.dict_tag = packer.tag;
    info.dict_bytes = best.dict.len() as u32;
    Plan {
        section: info.encode(&best.dict),
        packer: Some(packer),
        info,
    }
}

/// A codec and packer for exactly `method` (dictionary trained on `sample` for the zstd
/// methods), whatever it saves: for tests and fuzzing.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn forced(
    method: PackMethod,
    layout: &Layout,
    sample: &[&[u8]],
) -> Option<(Codec, Packer)> {
    let width = match method {
        PackMethod::ZstdShuffled => layout.float_width()?,
        _ => 0,
    };
    let bound = packed_bound(Some(layout));
    let t = trial(method, width, 3, layout, bound, sample, &[])?;
    let packer = Packer::new(method, width, &t.dict, 3, bound)?;
    let info = CodecInfo {
        policy: CompressionPolicy::Zstd,
        method,
        level: 3,
        shuffle_width: width as u8,
        dict_tag: packer.tag,
        dict_bytes: t.dict.len() as u32,
        sample_records: 0,
        sample_plain_bytes: 0,
        sample_packed_bytes: 0,
        decode_ns: 0,
    };
    Some((Codec::from_section(&info.encode(&t.dict)).ok()?, packer))
}

/// Trains a dictionary for `method` on `train` (zstd methods), packs `eval` with it and
/// times decoding it back.
fn trial(
    method: PackMethod,
    width: usize,
    level: i32,
    layout: &Layout,
    bound: usize,
    train: &[&[u8]],
    eval: &[&[u8]],
) -> Option<Trial> {
    // The dictionary learns from what the compressor will see: shuffled bytes if shuffling.
    let mut cells = Vec::new();
    let mut concat = Vec::new();
    let mut sizes = Vec::with_capacity(train.len());
    if method != PackMethod::Decimal {
        for rec in train {
            let start = concat.len();
            match record::parse_head(layout, rec, &mut cells).map(|h| h.values) {
                Ok(at) if method == PackMethod::ZstdShuffled => {
                    concat.extend_from_slice(&rec[..at]);
                    shuffle_into(&rec[at..], width, &mut concat);
                }
                _ => concat.extend_from_slice(rec),
            }
            sizes.push(concat.len() - start);
        }
    }
    let dict = if concat.len() >= MIN_TRAIN_BYTES && train.len() >= MIN_TRAIN_RECORDS {
        let max = TRAIN_DICT_LEN.min(concat.len() / 8).max(1024);
        zstd::dict::from_continuous(&concat, &sizes, max).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut packer = Packer::new(method, width, &dict, level, bound)?;
    let mut packed = Vec::with_capacity(eval.len());
    let (mut plain_bytes, mut packed_bytes) = (0u64, 0u64);
    let mut out = Vec::new();
    for rec in eval {
        plain_bytes += rec.len() as u64;
        if packer.pack(layout, rec, &mut out) {
            packed_bytes += out.len() as u64;
            packed.push(out.clone());
        } else {
            packed_bytes += rec.len() as u64;
        }
    }
    let section = CodecInfo {
        policy: CompressionPolicy::Zstd,
        method,
        level,
        shuffle_width: width as u8,
        dict_tag: packer.tag,
        dict_bytes: dict.len() as u32,
        sample_records: 0,
        sample_plain_bytes: 0,
        sample_packed_bytes: 0,
        decode_ns: 0,
    }
    .encode(&dict);
    let codec = Codec::from_section(&section).ok()?;
    let decode_ns = time_decode(&codec, layout, &packed)?;
    Some(Trial {
        method,
        width,
        dict,
        plain_bytes,
        packed_bytes,
        decode_ns,
    })
}

/// Nanoseconds to decode one of `packed` (best of three passes; 0 when none is packed).
fn time_decode(codec: &Codec, layout: &Layout, packed: &[Vec<u8>]) -> Option<u32> {
    if packed.is_empty() {
        return Some(0);
    }
    let mut dctx = Dctx::default();
    let mut buf = Vec::new();
    let mut best = u128::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for rec in packed {
            codec.unpack(rec, Some(layout), &mut dctx, &mut buf).ok()?;
        }
        best = best.min(started.elapsed().as_nanos());
    }
    Some(u32::try_from(best / packed.len() as u128).unwrap_or(u32::MAX))
}
