//! Next-token choice: greedy (temperature 0) or sampled with temperature, top-k and top-p
//! (HF order: temperature → top-k → top-p), from a seeded RNG.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Sampling settings (defaults: greedy).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SamplingConfig {
    /// 0 = greedy.
    #[serde(default)]
    pub temperature: f64,
    /// 0 = off.
    #[serde(default)]
    pub top_k: usize,
    /// 1.0 = off.
    #[serde(default = "one")]
    pub top_p: f64,
    #[serde(default)]
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// A sampler with its RNG.
pub struct Sampler {
    pub config: SamplingConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// Pick a token from one position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if c.top_k > 0 {
            idx.truncate(c.top_k);
        }
        let max = logits[idx[0]] as f64;
        let mut probs: Vec<f64> =
            idx.iter().map(|&i| ((logits[i] as f64 - max) / c.temperature).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = probs.iter().position(|p| {
                cum += p;
                cum >= c.top_p
            });
            let keep = keep.map_or(probs.len(), |k| k + 1);
            idx.truncate(keep);
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let mut u: f64 = self.rng.random();
        for (i, p) in idx.iter().zip(&probs) {
            if u < *p {
                return *i as u32;
            }
            u -= p;
        }
        idx[idx.len() - 1] as u32
    }
}

/// Index of the largest logit (first on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut s = Sampler::new(SamplingConfig::default());
        assert_eq!(s.sample(&[0.0, 1.0, 0.5]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits = [0.2f32, 0.1, 2.0, 1.9, -3.0];
        let mut s =
            Sampler::new(SamplingConfig { temperature: 1.0, top_k: 1, top_p: 1.0, seed: 1 });
        assert!((0..20).all(|_| s.sample(&logits) == 2));
        let draw = |seed| {
            let mut s =
                Sampler::new(SamplingConfig { temperature: 1.0, top_k: 0, top_p: 0.9, seed });
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert!(
            draw(7).iter().all(|&t| t == 2 || t == 3 || t == 0),
            "top-p 0.9 keeps the head only"
        );
    }
}
