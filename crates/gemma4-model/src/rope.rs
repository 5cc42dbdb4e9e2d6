//! Rotary position embeddings, HF "rotate-half" layout: element `j` pairs with `j + d/2`.
//!
//! - `default` (sliding layers): `inv_freq[j] = θ^(-2j/d)` for all `d/2` pairs.
//! - `proportional` (full layers, HF `_compute_proportional_rope_parameters`): only the first
//!   `R = floor(p·d/2)` pairs rotate, with `inv_freq[j] = θ^(-2j/d)` — the exponent divides by
//!   the FULL head dim — and the other `d/2 − R` pairs get frequency 0 (cos 1, sin 0).
//!   Every frequency is divided by `factor`.
//!
//! Burn's built-in RoPE pairs interleaved elements; this one does not.

use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::config::RopeConfig;

/// Positions whose cos/sin rows are kept on the host once computed (E2B's full layers: 64 MiB
/// at most); later positions are computed each time.
const CACHED_POSITIONS: usize = 16_384;

/// Inverse frequencies of one layer type, `[d/2]`, computed in f32 as HF does, and the cos/sin
/// rows of the positions seen so far: every training step asks for the same positions (on the
/// H200's host, these tables and the masks took 78 ms of each E2B 4 × 2048 step; 8 ms cached).
#[derive(Clone, Debug)]
pub struct Rope {
    pub inv_freq: Vec<f32>,
    /// Row `p`: `[cos(p·f), cos(p·f), sin(p·f), sin(p·f)]` over the `d/2` frequencies `f`.
    rows: Arc<Mutex<Vec<f32>>>,
}

impl Rope {
    pub fn new(cfg: &RopeConfig, head_dim: usize) -> Self {
        let half = head_dim / 2;
        let rotated = match cfg.rope_type.as_str() {
            // int(p * d // 2) in Python: floor of (p·d) / 2.
            "proportional" => {
                ((cfg.partial_rotary_factor * head_dim as f64).floor() as usize / 2).min(half)
            }
            _ => half,
        };
        let theta = cfg.rope_theta as f32;
        let inv_freq = (0..half)
            .map(|j| {
                if j < rotated {
                    let exponent = (2 * j) as f32 / head_dim as f32;
                    1.0 / theta.powf(exponent) / cfg.factor as f32
                } else {
                    0.0
                }
            })
            .collect();
        Self { inv_freq, rows: Arc::default() }
    }

    /// Position `p`'s row: `[cos(p·f), cos(p·f), sin(p·f), sin(p·f)]` (HF: freqs = position (f32)
    /// · inv_freq (f32), emb = cat(freqs, freqs)).
    fn row(&self, p: u32, out: &mut [f32]) {
        let half = self.inv_freq.len();
        for (j, f) in self.inv_freq.iter().enumerate() {
            let (sin, cos) = (p as f32 * f).sin_cos();
            (out[j], out[half + j], out[2 * half + j], out[3 * half + j]) = (cos, cos, sin, sin);
        }
    }

    /// The cached rows, extended to cover positions below `end` (at most [`CACHED_POSITIONS`]).
    fn cached(&self, end: usize) -> std::sync::MutexGuard<'_, Vec<f32>> {
        let width = 4 * self.inv_freq.len();
        let mut rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (have, want) = (rows.len() / width.max(1), end.min(CACHED_POSITIONS));
        if width > 0 && want > have {
            rows.resize(want * width, 0.0);
            rows[have * width..]
                .par_chunks_mut(width)
                .enumerate()
                .for_each(|(i, out)| self.row((have + i) as u32, out));
        }
        rows
    }

    /// cos/sin tables for positions `offset .. offset + len`.
    ///
    /// # Shapes
    /// - returns `([1, len, 1, d], [1, len, 1, d])`, ready to broadcast over `[b, s, h, d]`
    pub fn tables(&self, offset: usize, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let positions: Vec<u32> = (offset..offset + len).map(|p| p as u32).collect();
        self.tables_at(&positions, 1, device)
    }

    /// cos/sin tables for explicit per-token positions (packed samples restart at 0).
    ///
    /// # Shapes
    /// - positions: `rows · s` values → `([rows, s, 1, d], [rows, s, 1, d])`
    pub fn tables_at(
        &self,
        positions: &[u32],
        rows: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let d = 2 * self.inv_freq.len();
        let len = positions.len() / rows.max(1);
        let end = positions.iter().max().map_or(0, |&p| p as usize + 1);
        let cache = self.cached(end);
        let (mut cos, mut sin) = (vec![0f32; positions.len() * d], vec![0f32; positions.len() * d]);
        let mut scratch = vec![0f32; 2 * d];
        for ((&p, c), s) in positions.iter().zip(cos.chunks_mut(d)).zip(sin.chunks_mut(d)) {
            let row = match cache.get(p as usize * 2 * d..(p as usize + 1) * 2 * d) {
                Some(row) => row,
                None => {
                    self.row(p, &mut scratch);
                    &scratch
                }
            };
            c.copy_from_slice(&row[..d]);
            s.copy_from_slice(&row[d..]);
        }
        let mk =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [rows, len, 1, d]), device);
        (mk(cos), mk(sin))
    }
}

/// `x·cos + rotate_half(x)·sin`, with `rotate_half([x1, x2]) = [−x2, x1]`.
///
/// # Shapes
/// - x: `[b, s, h, d]`, cos/sin: `[1 or b, s, 1, d]` → `[b, s, h, d]`
pub fn apply_rotary(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    gemma4_kernels::fused::rope(x, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rope_type: &str, p: f64, factor: f64) -> RopeConfig {
        RopeConfig {
            rope_type: rope_type.into(),
            rope_theta: 1_000_000.0,
            partial_rotary_factor: p,
            factor,
        }
    }

    #[test]
    fn proportional_rope_divides_exponent_by_full_head_dim() {
        // E2B/E4B/31B full layers: d = 512, p = 0.25 → 64 rotated pairs, the rest frequency 0.
        let r = Rope::new(&cfg("proportional", 0.25, 1.0), 512);
        assert_eq!(r.inv_freq.len(), 256);
        assert_eq!(r.inv_freq[0], 1.0);
        let want = 1.0 / 1_000_000f64.powf(2.0 * 63.0 / 512.0);
        assert!((r.inv_freq[63] as f64 / want - 1.0).abs() < 1e-5);
        assert!(r.inv_freq[64..].iter().all(|&f| f == 0.0));
    }

    #[test]
    fn factor_divides_every_frequency() {
        let a = Rope::new(&cfg("proportional", 0.5, 1.0), 32);
        let b = Rope::new(&cfg("proportional", 0.5, 4.0), 32);
        for (x, y) in a.inv_freq.iter().zip(&b.inv_freq) {
            assert!((x / 4.0 - y).abs() <= 1e-7 * x.abs());
        }
        assert_eq!(a.inv_freq.iter().filter(|&&f| f > 0.0).count(), 8);
    }

    #[test]
    fn tables_are_hfs_formula_inside_and_beyond_the_cached_positions() {
        let device = Device::flex();
        let r = Rope::new(&cfg("proportional", 0.25, 1.0), 16);
        let positions = [7u32, 0, (CACHED_POSITIONS + 3) as u32, 7, 2];
        for _ in 0..2 {
            // The first pass fills the cache, the second reads it.
            let (cos, sin) = r.tables_at(&positions, 1, &device);
            let (cos, sin) = (
                cos.into_data().try_to_vec::<f32>().unwrap(),
                sin.into_data().try_to_vec::<f32>().unwrap(),
            );
            for (i, &p) in positions.iter().enumerate() {
                for j in 0..16 {
                    let angle = p as f32 * r.inv_freq[j % 8];
                    assert_eq!(
                        (cos[i * 16 + j], sin[i * 16 + j]),
                        (angle.cos(), angle.sin()),
                        "{p} {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn rotation_pairs_j_with_j_plus_half() {
        let device = Device::flex();
        let r = Rope::new(
            &RopeConfig {
                rope_type: "default".into(),
                rope_theta: 10_000.0,
                partial_rotary_factor: 1.0,
                factor: 1.0,
            },
            4,
        );
        let (cos, sin) = r.tables(3, 1, &device);
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]),
            &device,
        );
        let y: Vec<f32> = apply_rotary(x, &cos, &sin).into_data().try_to_vec_as::<f32>().unwrap();
        let (a0, a1) = (3.0f32, 3.0f32 * 0.01);
        let want = [
            1.0 * a0.cos() - 3.0 * a0.sin(),
            2.0 * a1.cos() - 4.0 * a1.sin(),
            3.0 * a0.cos() + 1.0 * a0.sin(),
            4.0 * a1.cos() + 2.0 * a1.sin(),
        ];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }
}
