//! Random weights for a config: a [`Checkpoint`](crate::Checkpoint) whose tensors are computed,
//! not read (`Checkpoint::random`). Benchmarks build real-shape models through the same loader
//! and weight table as real checkpoints, without writing gigabytes to disk.
//!
//! Values are a counter-based hash of (seed, tensor name, element index): any element, e.g. one
//! PLE table row, is computed on its own, so the 2.3 G-value E2B PLE table never exists anywhere.
//! Matrices are uniform with standard deviation `std`; norm weights and scalars are `1 ± 0.1`.

/// How a random checkpoint's values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomInit {
    pub seed: u64,
    /// Standard deviation of matrix entries (HF's `initializer_range`, 0.02).
    pub std: f32,
}

/// SplitMix64: a well-mixed 64-bit hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a tensor name.
fn name_hash(name: &str) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl RandomInit {
    /// Whether `name` holds scales (norm weights, `layer_scalar`, router scales) rather than a matrix.
    fn is_scale(name: &str) -> bool {
        name.ends_with("norm.weight")
            || name.ends_with("layer_scalar")
            || name.ends_with(".scale")
            || name.ends_with("per_expert_scale")
    }

    /// Elements `range` (row-major) of tensor `name`.
    pub fn values(&self, name: &str, range: std::ops::Range<usize>) -> Vec<f32> {
        use rayon::prelude::*;
        let mut out = vec![0f32; range.len()];
        out.par_chunks_mut(1 << 16)
            .enumerate()
            .for_each(|(c, chunk)| self.fill(name, range.start + (c << 16), chunk));
        out
    }

    /// Elements `start .. start + out.len()` of tensor `name` into `out` (on this thread).
    pub fn fill(&self, name: &str, start: usize, out: &mut [f32]) {
        let key = mix(self.seed ^ name_hash(name));
        // Uniform on [-a, a] has standard deviation a/√3.
        let (centre, half) =
            if Self::is_scale(name) { (1.0f32, 0.1f32) } else { (0.0, self.std * 3f32.sqrt()) };
        for (k, v) in out.iter_mut().enumerate() {
            let i = (start + k) as u64;
            let u = (mix(key ^ i.wrapping_mul(0xd134_2543_de82_ef95)) >> 40) as f32
                / (1u64 << 24) as f32; // [0, 1)
            *v = centre + half * (2.0 * u - 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_reproducible_addressable_and_scaled() {
        let init = RandomInit { seed: 7, std: 0.02 };
        let all = init.values("model.layers.0.mlp.up_proj.weight", 0..100_000);
        assert_eq!(
            init.values("model.layers.0.mlp.up_proj.weight", 500..510),
            all[500..510].to_vec()
        );
        assert_ne!(init.values("model.layers.1.mlp.up_proj.weight", 0..10), all[..10].to_vec());
        let mean = all.iter().sum::<f32>() / all.len() as f32;
        let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / all.len() as f32).sqrt();
        assert!(mean.abs() < 1e-3 && (std - 0.02).abs() < 1e-3, "mean {mean} std {std}");
        let norm = init.values("model.norm.weight", 0..1000);
        assert!(
            norm.iter().all(|v| (0.9..=1.1).contains(v))
                && norm.iter().any(|v| (v - 1.0).abs() > 0.05)
        );
    }
}
