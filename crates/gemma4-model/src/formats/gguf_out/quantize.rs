//! f32 → ggml blocks, llama.cpp's reference encoders (`ggml-quants.c` `quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`; f16/bf16 round to nearest even; the K-quants in `kquants.rs`), and
//! which type each tensor takes: one type for all matrices, or llama.cpp's `Q4_K_M` mix
//! (`llama-quant.cpp` `llama_tensor_get_type`). [`quantize_checked`] decodes every tensor back
//! through our own [`dequantize`] and refuses one that does not come back.

use half::{bf16, f16};

use super::kquants;
use crate::error::{ModelError, Result};
use crate::formats::quant::{GgmlType, dequantize};

/// The output types `--quant` offers (block formats the reader also decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportQuant {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    /// llama.cpp's `Q4_K_M`: Q4_K, with Q6_K for the output head (or the tied embedding) and
    /// for the `attn_v` and `ffn_down` of the layers [`more_bits`] picks.
    Q4KM,
    /// Q6_K throughout.
    Q6K,
}

/// What a matrix is, for the mixes that give some tensors more bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `output.weight`, or `token_embd.weight` when the head is tied to it.
    Head,
    /// An `attn_v` or `ffn_down` that the `Q4_K_M` mix widens ([`more_bits`]).
    MoreBits,
    Plain,
}

/// llama.cpp's choice of the `i`-th of `n` (`attn_v` tensors or layers' `ffn_down`): the first
/// and last eighth, and every third in between.
pub fn more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

impl ExportQuant {
    /// Every name `--quant` accepts, for messages.
    pub const NAMES: &'static str = "f32, f16, bf16, q8_0, q4_0, q4_k_m, q6_k";

    /// `f16`, `q8_0`, ... (case-insensitive); an error lists the accepted names.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "bf16" => Self::BF16,
            "q8_0" => Self::Q8_0,
            "q4_0" => Self::Q4_0,
            "q4_k_m" | "q4_k" => Self::Q4KM,
            "q6_k" => Self::Q6K,
            other => {
                return Err(ModelError::Unsupported {
                    key: "--quant".into(),
                    value: other.into(),
                    hint: Some(format!("GGUF export writes {}", Self::NAMES)),
                });
            }
        })
    }

    /// The ggml type of the weight matrices.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::BF16 => GgmlType::BF16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4KM => GgmlType::Q4K,
            Self::Q6K => GgmlType::Q6K,
        }
    }

    /// The type a tensor of `shape` (HF order) in `role` is written as, and whether it fell
    /// back for its row length: 1-D tensors stay F32 (llama.cpp's converter keeps norms and
    /// vectors in F32); matrices take [`Self::ggml`], Q6_K for `Q4_K_M`'s head and widened
    /// tensors (as for `Q6_K`'s head); a row that is not a whole number of blocks falls back as
    /// llama.cpp does (Q4_K → Q5_0, Q6_K → Q8_0, then F16).
    pub fn tensor_type(self, shape: &[usize], role: Role) -> (GgmlType, bool) {
        if shape.len() < 2 {
            return (GgmlType::F32, false);
        }
        let ty = match (self, role) {
            (Self::Q4KM, Role::Head | Role::MoreBits) | (Self::Q6K, _) => GgmlType::Q6K,
            _ => self.ggml(),
        };
        let row = shape.last().copied().unwrap_or(0);
        let fits = |t: GgmlType| row.is_multiple_of(t.block().0);
        if fits(ty) {
            return (ty, false);
        }
        let next = match ty {
            GgmlType::Q4K => GgmlType::Q5_0,
            GgmlType::Q6K => GgmlType::Q8_0,
            _ => GgmlType::F16,
        };
        (if fits(next) { next } else { GgmlType::F16 }, true)
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2,
    /// MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_Q6_K 18, MOSTLY_BF16 32).
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q4KM => 15,
            Self::Q6K => 18,
            Self::BF16 => 32,
        }
    }

    /// The largest relative L2 error a tensor may come back with through [`dequantize`]:
    /// twice what the format gives on Gaussian weights, so only a broken encode trips it.
    fn tolerance(ty: GgmlType) -> f64 {
        match ty {
            GgmlType::F32 => 0.0,
            GgmlType::F16 => 1e-3,
            GgmlType::BF16 => 1e-2,
            GgmlType::Q8_0 => 2e-2,
            GgmlType::Q6K => 4e-2,
            _ => 0.25,
        }
    }
}

/// Encode `values` (a whole number of blocks) as `ty`. Types we only read are refused.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let (per, size) = ty.block();
    if !values.len().is_multiple_of(per) {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / per * size);
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values.iter().for_each(|v| out.extend(bf16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => values.chunks_exact(32).for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4_0 => values.chunks_exact(32).for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q5_0 => values.chunks_exact(32).for_each(|b| kquants::q5_0(b, &mut out)),
        GgmlType::Q4K => values.chunks_exact(256).for_each(|b| kquants::q4_k(b, &mut out)),
        GgmlType::Q6K => values.chunks_exact(256).for_each(|b| kquants::q6_k(b, &mut out)),
        _ => return None,
    }
    Some(out)
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    // The value of largest magnitude, sign kept: it maps to −8 exactly.
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
}

/// [`quantize`], then decode the bytes with [`dequantize`] and refuse a tensor that does not
/// come back (non-finite values, e.g. beyond f16's range, or an error past the format's
/// tolerance). `name` is the llama.cpp tensor name, for the message.
pub fn quantize_checked(name: &str, ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let err = |reason: String| ModelError::Tensor { name: name.into(), reason };
    let bytes = quantize(ty, values).ok_or_else(|| {
        err(format!("{} values cannot be written as {ty:?} (whole blocks only)", values.len()))
    })?;
    let back = dequantize(ty, &bytes);
    if back.len() != values.len() {
        return Err(err(format!("{ty:?} decoded to {} of {} values", back.len(), values.len())));
    }
    if let Some(i) = back.iter().position(|v| !v.is_finite()) {
        return Err(err(format!(
            "value {} at {i} is not representable as {ty:?} (hint: --quant f32 or bf16)",
            values[i]
        )));
    }
    let (mut diff, mut norm) = (0f64, 0f64);
    for (a, b) in values.iter().zip(&back) {
        diff += f64::from(a - b).powi(2);
        norm += f64::from(*a).powi(2);
    }
    let rel = if norm > 0.0 { (diff / norm).sqrt() } else { diff.sqrt() };
    if rel > ExportQuant::tolerance(ty) {
        return Err(err(format!(
            "comes back from {ty:?} with relative L2 error {rel:.3e} (bound {:.0e})",
            ExportQuant::tolerance(ty)
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect()
    }

    #[test]
    fn every_export_type_comes_back_through_our_dequantiser() {
        let x = wave(256);
        for (q, bound) in [
            (ExportQuant::F32, 0.0),
            (ExportQuant::F16, 1e-3),
            (ExportQuant::BF16, 5e-3),
            (ExportQuant::Q8_0, 1e-2),
            (ExportQuant::Q4_0, 0.15),
            (ExportQuant::Q4KM, 0.12),
            (ExportQuant::Q6K, 2e-2),
        ] {
            let ty = q.ggml();
            let back = dequantize(ty, &quantize_checked("t", ty, &x).unwrap());
            let num: f32 = x.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
            let den: f32 = x.iter().map(|a| a * a).sum();
            assert!((num / den).sqrt() <= bound, "{q:?}: {}", (num / den).sqrt());
        }
    }

    #[test]
    fn q4_0_maps_the_largest_magnitude_to_minus_eight() {
        let mut x = vec![0.0f32; 32];
        x[3] = -2.0;
        x[20] = 1.0;
        let b = quantize(GgmlType::Q4_0, &x).unwrap();
        let back = dequantize(GgmlType::Q4_0, &b);
        assert_eq!(back[3], -2.0);
        assert_eq!(back[20], 1.0);
        assert_eq!(back[0], 0.0);
    }

    #[test]
    fn values_beyond_f16_are_refused_naming_the_tensor() {
        let e = quantize_checked("blk.0.x.weight", GgmlType::F16, &[1e6; 4]).unwrap_err();
        assert!(e.to_string().contains("blk.0.x.weight"), "{e}");
        assert!(ExportQuant::parse("q3_k").unwrap_err().to_string().contains("q4_k_m"));
    }

    /// Gaussian-like weights (a sum of uniforms), one scale per row as in a real matrix.
    fn weights(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        (0..n).map(|_| (next() + next() + next() + next()) * 0.03).collect()
    }

    #[test]
    fn k_quants_and_q5_0_come_back_within_their_formats_error() {
        let x = weights(256 * 64, 7);
        let rel = |ty: GgmlType| {
            let back = dequantize(ty, &quantize(ty, &x).unwrap());
            let num: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a - b).powi(2)).sum();
            let den: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
            (num / den).sqrt()
        };
        // 6 bits ≈ 1/64 of a group's range, 5 and 4 bits twice and four times that.
        let (q6, q5, q4) = (rel(GgmlType::Q6K), rel(GgmlType::Q5_0), rel(GgmlType::Q4K));
        assert!(q6 < 0.02 && q5 < 0.06 && q4 < 0.12, "q6_k {q6}, q5_0 {q5}, q4_k {q4}");
        assert!(q6 < q5 && q5 < q4, "more bits, less error: {q6} {q5} {q4}");
        // A group of one sign and a block of zeros stay exact at the ends of their range.
        let mut y = vec![0f32; 256];
        y[..32].iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 / 31.0);
        let back = dequantize(GgmlType::Q4K, &quantize(GgmlType::Q4K, &y).unwrap());
        assert!(back[32..].iter().all(|v| *v == 0.0), "{:?}", &back[32..40]);
        assert!((back[31] - 1.0).abs() < 2e-2 && back[0].abs() < 2e-2, "{:?}", &back[..4]);
    }

    #[test]
    fn q4_k_m_widens_the_head_and_every_third_middle_layer_and_falls_back_like_llama_cpp() {
        let q = ExportQuant::Q4KM;
        assert_eq!(q.tensor_type(&[512, 256], Role::Plain), (GgmlType::Q4K, false));
        assert_eq!(q.tensor_type(&[512, 256], Role::Head), (GgmlType::Q6K, false));
        assert_eq!(q.tensor_type(&[512, 256], Role::MoreBits), (GgmlType::Q6K, false));
        assert_eq!(q.tensor_type(&[512, 96], Role::Plain), (GgmlType::Q5_0, true));
        assert_eq!(q.tensor_type(&[512, 96], Role::Head), (GgmlType::Q8_0, true));
        assert_eq!(q.tensor_type(&[512, 40], Role::Plain), (GgmlType::F16, true));
        assert_eq!(q.tensor_type(&[256], Role::Plain), (GgmlType::F32, false));
        // 35 layers (E2B): 0–3 and 30–34, then 6, 9, …, 27 (llama.cpp's use_more_bits).
        let picked: Vec<usize> = (0..35).filter(|&i| more_bits(i, 35)).collect();
        assert_eq!(picked, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 33, 34]);
        assert_eq!((ExportQuant::Q4KM.file_type(), ExportQuant::Q6K.file_type()), (15, 18));
    }
}
