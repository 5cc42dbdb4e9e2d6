//! ggml tensor types and their dequantisation to f32 (llama.cpp `ggml-quants.c`
//! `dequantize_row_*`, same arithmetic in f32). Block layouts, little-endian:
//!
//! | type | elems | bytes | layout |
//! |---|---|---|---|
//! | Q4_0 | 32 | 18 | f16 d, 16 nibbles: `y = (q − 8)·d` (low nibbles first half, high second) |
//! | Q5_0 | 32 | 22 | f16 d, u32 qh (5th bits), 16 nibbles: `y = (q − 16)·d` |
//! | Q8_0 | 32 | 34 | f16 d, 32 × i8: `y = q·d` |
//! | Q4_K | 256 | 144 | f16 d, f16 dmin, 12 B of 6-bit scales/mins, 128 B nibbles: `y = d·sc·q − dmin·m` |
//! | Q5_K | 256 | 176 | as Q4_K plus 32 B of 5th bits |
//! | Q6_K | 256 | 210 | 128 B low nibbles, 64 B high 2 bits, 16 × i8 scales, f16 d: `y = d·sc·(q − 32)` |

use half::{bf16, f16};

/// The ggml types we read (GGUF `ggml_type` ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    /// `Err(name)` for a type id we do not dequantise (named for the message).
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            30 => Self::BF16,
            2 => Self::Q4_0,
            6 => Self::Q5_0,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            3 => return Err("Q4_1".into()),
            7 => return Err("Q5_1".into()),
            9 => return Err("Q8_1".into()),
            10 => return Err("Q2_K".into()),
            11 => return Err("Q3_K".into()),
            15 => return Err("Q8_K".into()),
            16..=23 => return Err(format!("IQ type {id}")),
            other => return Err(format!("ggml type {other}")),
        })
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q5_0 => (32, 22),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes of `n` elements (`n` must be a whole number of blocks).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (e, b) = self.block();
        n.is_multiple_of(e).then(|| (n / e).checked_mul(b)).flatten()
    }
}

fn half(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantise `bytes` (whole blocks) of type `ty` to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let (per, size) = ty.block();
    let mut out = Vec::with_capacity(bytes.len() / size * per);
    for b in bytes.chunks_exact(size) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(half(b)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q4_0 => q4_0(b, &mut out),
            GgmlType::Q5_0 => q5_0(b, &mut out),
            GgmlType::Q8_0 => out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * half(b))),
            GgmlType::Q4K => q4_k(b, &mut out),
            GgmlType::Q5K => q5_k(b, &mut out),
            GgmlType::Q6K => q6_k(b, &mut out),
        }
    }
    out
}

fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| ((q & 0xF) as i32 - 8) as f32 * d));
    out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
}

fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for (j, &q) in qs.iter().enumerate() {
        let h = ((qh >> j) << 4) & 0x10;
        out.push((((q as u32 & 0xF) | h) as i32 - 16) as f32 * d);
    }
    for (j, &q) in qs.iter().enumerate() {
        let h = (qh >> (j + 12)) & 0x10;
        out.push((((q as u32 >> 4) | h) as i32 - 16) as f32 * d);
    }
}

/// 6-bit scale and min `j` of the 12-byte K-quant scale block (`get_scale_min_k4`).
fn scale_min(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as f32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
        )
    }
}

fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half(&b[0..2]), half(&b[2..4]));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (i, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min(2 * i, scales);
        let (sc2, m2) = scale_min(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, min * m1, d * sc2, min * m2);
        out.extend(q.iter().map(|&x| d1 * (x & 0xF) as f32 - m1));
        out.extend(q.iter().map(|&x| d2 * (x >> 4) as f32 - m2));
    }
}

fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half(&b[0..2]), half(&b[2..4]));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (i, ql) in qs.chunks_exact(32).enumerate() {
        let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
        let (sc1, m1) = scale_min(2 * i, scales);
        let (sc2, m2) = scale_min(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, min * m1, d * sc2, min * m2);
        let hi = |l: usize, u: u8| if qh[l] & u != 0 { 16.0 } else { 0.0 };
        out.extend((0..32).map(|l| d1 * ((ql[l] & 0xF) as f32 + hi(l, u1)) - m1));
        out.extend((0..32).map(|l| d2 * ((ql[l] >> 4) as f32 + hi(l, u2)) - m2));
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half(&b[208..210]);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8 as f32) * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8 as f32) * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8 as f32) * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8 as f32) * q4 as f32;
        }
        out.extend_from_slice(&y);
    }
}
