//! Lossy storage for float32 vectors (embeddings), opted into per feature in the registry.
//! Values are always returned to clients as float32.
//!
//! | storage | bytes per component | error bound (per component) |
//! |---|---|---|
//! | `float16` | 2 | relative 2^-11 for \|x\| in [6.1e-5, 65504]; absolute 2^-25 below; \|x\| > 65504 becomes ±inf |
//! | `bfloat16` | 2 | relative 2^-8 over the whole float32 range |
//! | `int8` | 1 (+4 per vector) | absolute max\|x\| / 254, with a per-vector scale max\|x\| / 127 |
//!
//! Rounding is to nearest, ties to even. NaN stays NaN in float16 and bfloat16; `int8` cannot
//! hold NaN or infinities, so writes of such vectors to an `int8` feature are refused.

/// How a vector feature's components are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VectorStorage {
    /// Exact: 4 bytes per component.
    #[default]
    Float32,
    /// IEEE 754 half precision: 2 bytes per component.
    Float16,
    /// The top half of a float32: 2 bytes per component, float32's range.
    BFloat16,
    /// Signed bytes times a per-vector float32 scale: 1 byte per component + 4.
    Int8,
}

impl VectorStorage {
    /// Parses a registry spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "float32" => Self::Float32,
            "float16" => Self::Float16,
            "bfloat16" => Self::BFloat16,
            "int8" => Self::Int8,
            _ => return None,
        })
    }

    /// The registry spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Float16 => "float16",
            Self::BFloat16 => "bfloat16",
            Self::Int8 => "int8",
        }
    }

    /// `v` as it reads back after being stored this way (what serving returns), in place. The
    /// offline join applies it so training sets hold exactly the served values.
    pub fn round_trip(self, v: &mut [f32]) {
        if self == Self::Float32 {
            return;
        }
        let mut buf = Vec::with_capacity(self.encoded_len(v.len()));
        self.encode(v, &mut buf);
        self.decode(&buf, v);
    }

    /// Encoded size of a vector of `dim` components.
    pub(crate) fn encoded_len(self, dim: usize) -> usize {
        match self {
            Self::Float32 => dim * 4,
            Self::Float16 | Self::BFloat16 => dim * 2,
            Self::Int8 => dim + 4,
        }
    }

    /// Appends the stored form of `v`.
    pub(crate) fn encode(self, v: &[f32], out: &mut Vec<u8>) {
        match self {
            Self::Float32 => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Self::Float16 => v
                .iter()
                .for_each(|x| out.extend_from_slice(&f32_to_f16(*x).to_le_bytes())),
            Self::BFloat16 => v
                .iter()
                .for_each(|x| out.extend_from_slice(&f32_to_bf16(*x).to_le_bytes())),
            Self::Int8 => {
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
                out.extend_from_slice(&scale.to_le_bytes());
                for x in v {
                    let q = if scale > 0.0 {
                        (x / scale).round_ties_even().clamp(-127.0, 127.0)
                    } else {
                        0.0
                    };
                    out.push(q as i8 as u8);
                }
            }
        }
    }

    /// Decodes exactly `dst.len()` components from `src` (which must be `encoded_len` long).
    pub(crate) fn decode(self, src: &[u8], dst: &mut [f32]) -> bool {
        if src.len() != self.encoded_len(dst.len()) {
            return false;
        }
        match self {
            Self::Float32 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Self::Float16 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                }
            }
            Self::BFloat16 => {
                for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
                }
            }
            Self::Int8 => {
                let scale = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
                for (d, q) in dst.iter_mut().zip(&src[4..]) {
                    *d = f32::from(*q as i8) * scale;
                }
            }
        }
        true
    }
}

/// float32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// float32 → IEEE half bits, round to nearest even, overflow to infinity, subnormals kept.
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        // Inf or NaN (keep NaN quiet and non-zero).
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the full significand into place with rounding.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut h = m >> shift;
        if rem > half || (rem == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent, up to infinity: correct rounding
    }
    sign | h as u16
}

/// IEEE half bits → float32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13) | 0x40_0000,
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: VectorStorage, v: &[f32]) -> Vec<f32> {
        let mut buf = Vec::new();
        s.encode(v, &mut buf);
        assert_eq!(buf.len(), s.encoded_len(v.len()));
        let mut out = vec![0.0; v.len()];
        assert!(s.decode(&buf, &mut out));
        out
    }

    fn samples() -> Vec<f32> {
        let mut v = vec![
            0.0, -0.0, 1.0, -1.0, 0.5, 1e-3, -2.71, 65504.0, 6.1e-5, 1e-7, 123.456,
        ];
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push(((x as f32 / u32::MAX as f32) - 0.5) * 20.0);
        }
        v
    }

    #[test]
    fn float16_meets_its_bound() {
        let v = samples();
        for (x, y) in v.iter().zip(round_trip(VectorStorage::Float16, &v)) {
            let ax = x.abs();
            if ax >= 6.1e-5 {
                assert!((x - y).abs() <= ax * 2f32.powi(-11), "{x} -> {y}");
            } else {
                assert!((x - y).abs() <= 2f32.powi(-25), "{x} -> {y}");
            }
        }
        let special = round_trip(
            VectorStorage::Float16,
            &[f32::NAN, f32::INFINITY, -1e6, 1.0],
        );
        assert!(special[0].is_nan());
        assert_eq!(&special[1..], &[f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        // Exactly representable halves survive unchanged, including subnormals.
        for h in [0x0001u16, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff] {
            let x = f16_to_f32(h);
            assert_eq!(f32_to_f16(x), h, "{h:#06x}");
        }
    }

    #[test]
    fn bfloat16_meets_its_bound() {
        let mut v = samples();
        v.extend([1e30f32, -1e-30, f32::MAX / 2.0]);
        for (x, y) in v.iter().zip(round_trip(VectorStorage::BFloat16, &v)) {
            assert!((x - y).abs() <= x.abs() * 2f32.powi(-8), "{x} -> {y}");
        }
        assert!(round_trip(VectorStorage::BFloat16, &[f32::NAN])[0].is_nan());
    }

    #[test]
    fn int8_meets_its_bound() {
        let v = samples();
        for chunk in v.chunks(64) {
            let max = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (x, y) in chunk.iter().zip(round_trip(VectorStorage::Int8, chunk)) {
                assert!(
                    (x - y).abs() <= max / 254.0 * 1.0001,
                    "{x} -> {y} (max {max})"
                );
            }
        }
        assert_eq!(round_trip(VectorStorage::Int8, &[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn float32_is_exact_and_lengths_are_checked() {
        let v = samples();
        let back = round_trip(VectorStorage::Float32, &v);
        assert!(v.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut out = [0f32; 3];
        assert!(!VectorStorage::Int8.decode(&[0; 6], &mut out));
        assert!(!VectorStorage::Float16.decode(&[0; 5], &mut out));
    }
}
