//! AdamW over the adapter's tensors only (PyTorch `torch.optim.AdamW` semantics: decoupled weight
//! decay `p ← p·(1 − lr·wd)`, bias-corrected moments), plus the global-norm gradient clip and
//! f16 loss scaling.
//! Written out rather than Burn's optimizer so its state is plain tensors by PEFT key: saved in
//! the trainer state and restored bit for bit on `--resume`.

use std::collections::BTreeMap;

use burn::tensor::{DType, Tensor};
use gemma4_kernels::AdamwStep;

use crate::recipe::OptimSection;

/// First and second moments per adapter tensor, and the step count.
#[derive(Clone, Debug, Default)]
pub struct AdamW {
    pub step: u64,
    pub m: BTreeMap<String, Tensor<2>>,
    pub v: BTreeMap<String, Tensor<2>>,
}

impl AdamW {
    /// One update of `param` (key `key`) with gradient `grad` times `grad_scale`: see
    /// [`AdamW::update_all`].
    pub fn update(
        &mut self,
        cfg: &OptimSection,
        lr: f64,
        key: &str,
        param: Tensor<2>,
        grad: Tensor<2>,
        grad_scale: f64,
    ) -> Tensor<2> {
        let items = vec![(key.to_owned(), param, grad)];
        self.update_all(cfg, lr, items, grad_scale).remove(0)
    }

    /// One update of each `(key, param, grad)` with the gradient times `grad_scale` (the
    /// unscale-and-clip factor); returns the new values in order. The arithmetic is
    /// [`gemma4_kernels::fused::adamw_many`]'s: several tensors per kernel on a GPU.
    pub fn update_all(
        &mut self,
        cfg: &OptimSection,
        lr: f64,
        items: Vec<(String, Tensor<2>, Tensor<2>)>,
        grad_scale: f64,
    ) -> Vec<Tensor<2>> {
        let step = AdamwStep {
            lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            step: self.step,
            grad_scale,
        };
        let mut keys = Vec::with_capacity(items.len());
        let items = items
            .into_iter()
            .map(|(key, param, grad)| {
                let moments = match (self.m.remove(&key), self.v.remove(&key)) {
                    (Some(m), Some(v)) => Some((m, v)),
                    _ => None,
                };
                keys.push(key);
                (param, grad, moments)
            })
            .collect();
        let updated = gemma4_kernels::fused::adamw_many(items, &step);
        keys.into_iter()
            .zip(updated)
            .map(|(key, (new, m, v))| {
                self.m.insert(key.clone(), m);
                self.v.insert(key, v);
                new
            })
            .collect()
    }
}

/// Each gradient's `Σ g²` in key order: on the device (one kernel per tensor on a GPU), one
/// read-back for all.
pub fn square_sums(grads: &BTreeMap<String, Tensor<2>>) -> Vec<f64> {
    let tensors: Vec<&Tensor<2>> = grads.values().collect();
    gemma4_kernels::fused::square_sums(&tensors)
}

/// Global L2 norm of all gradients from their [`square_sums`], in f64.
pub fn global_norm(sums: &[f64]) -> f64 {
    sums.iter().sum::<f64>().sqrt()
}

/// Keys of the gradients whose [`square_sums`] entry is not finite: a non-finite value, or
/// squares beyond f32's range. These are the tensors that made the global norm overflow; no
/// further read-back.
pub fn overflowed_keys(grads: &BTreeMap<String, Tensor<2>>, sums: &[f64]) -> Vec<String> {
    grads.keys().zip(sums).filter(|(_, s)| !s.is_finite()).map(|(k, _)| k.clone()).collect()
}

/// Keys of the gradients holding a non-finite value (one read-back per tensor: for diagnostics).
pub fn nonfinite_keys(grads: &BTreeMap<String, Tensor<2>>) -> Vec<String> {
    grads
        .iter()
        .filter(|(_, g)| !(*g).clone().abs().max().into_scalar::<f32>().is_finite())
        .map(|(k, _)| k.clone())
        .collect()
}

/// Dynamic loss scaling under f16 weights (the rule of `torch.amp.GradScaler`).
///
/// Gradients flow back through f16 matmuls, where a loss normalised over thousands of tokens
/// gives values below f16's smallest normal (6e-5) that round to zero. So the backward pass
/// differentiates `scale × loss`; the f32 LoRA gradients are unscaled before clipping. A step
/// whose scaled gradients overflow is skipped and the scale halved; after
/// [`LossScale::GROWTH_INTERVAL`] good steps in a row it doubles. Without f16 it is 1 and inert.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScale {
    pub scale: f64,
    enabled: bool,
    good_steps: u32,
}

impl LossScale {
    pub const INIT: f64 = 65536.0;
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// Enabled for f16 weights.
    pub fn new(weights: DType) -> Self {
        let enabled = weights == DType::F16;
        Self { scale: if enabled { Self::INIT } else { 1.0 }, enabled, good_steps: 0 }
    }

    /// What is wrong with a scaler read from a checkpoint, if anything: the scale finite,
    /// in (0, 2^64] (doubling it must stay finite), the good-step count under the interval.
    pub fn problem(&self) -> Option<String> {
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 2f64.powi(64)) {
            return Some(format!("loss_scale.scale {} must be > 0 and at most 2^64", self.scale));
        }
        (self.good_steps >= Self::GROWTH_INTERVAL).then(|| {
            format!(
                "loss_scale.good_steps {} must be below {}",
                self.good_steps,
                Self::GROWTH_INTERVAL
            )
        })
    }

    /// From the global norm of the (scaled) gradients: `Some((norm, factor))` with the true norm
    /// and the factor that unscales and clips them to `max_norm`; `None` when they overflowed
    /// (skip the step: the scale is halved). A non-finite norm at scale 1 is returned as is.
    pub fn unscale(&mut self, scaled_norm: f64, max_norm: f64) -> Option<(f64, f64)> {
        // At scale 1 there is nothing left to halve: the caller sees the non-finite norm.
        if self.enabled && !scaled_norm.is_finite() && self.scale > 1.0 {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            return None;
        }
        let norm = scaled_norm / self.scale;
        let clip = if max_norm > 0.0 && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 };
        let factor = clip / self.scale;
        if self.enabled {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        }
        Some((norm, factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn loss_scale_skips_overflow_halves_and_grows() {
        let mut s = LossScale::new(DType::F16);
        assert_eq!(s.scale, LossScale::INIT);
        assert!(s.unscale(f64::INFINITY, 1.0).is_none());
        assert_eq!(s.scale, LossScale::INIT / 2.0);
        // Scaled norm 3·scale: the true norm is 3, clipped to 1 and unscaled in one factor.
        let (norm, factor) = s.unscale(3.0 * s.scale, 1.0).expect("finite");
        assert!((norm - 3.0).abs() < 1e-9 && (factor * s.scale - 1.0 / 3.0).abs() < 1e-6);
        for _ in 1..LossScale::GROWTH_INTERVAL {
            s.unscale(1.0, 0.0);
        }
        assert_eq!(s.scale, LossScale::INIT, "doubles after the growth interval of good steps");
        let mut off = LossScale::new(DType::F32);
        assert!(
            off.unscale(f64::NAN, 1.0).is_some(),
            "inert without f16: a non-finite norm is the caller's to handle"
        );
        assert_eq!(off.scale, 1.0);
    }

    #[test]
    fn overflowed_keys_are_the_non_finite_square_sums() {
        let device = Device::flex();
        let t = |v: [f32; 2]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, 2]), &device);
        let grads = BTreeMap::from([
            ("a".to_string(), t([1.0, 2.0])),
            ("b".to_string(), t([f32::INFINITY, 0.0])),
            ("c".to_string(), t([3.0, 4.0])),
            ("d".to_string(), t([f32::NAN, 1.0])),
        ]);
        let sums = square_sums(&grads);
        assert_eq!(sums[0], 5.0);
        assert_eq!(sums[2], 25.0);
        assert!(!global_norm(&sums).is_finite(), "one overflow makes the norm overflow");
        assert_eq!(overflowed_keys(&grads, &sums), ["b", "d"]);
        let finite: Vec<f64> = sums.iter().map(|s| if s.is_finite() { *s } else { 0.0 }).collect();
        assert_eq!(global_norm(&finite), 30f64.sqrt());
        assert!(overflowed_keys(&grads, &finite).is_empty());
    }

    #[test]
    fn adamw_matches_pytorch_first_steps() {
        // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), p = [1, -2], g = [0.5, 0.25] twice:
        // step 1: p = [0.899, -2.098]; step 2 with the same g: p = [0.798101, -2.195902]
        let device = Device::flex();
        let cfg = OptimSection {
            lr: 0.1,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 0.0,
        };
        let mut opt = AdamW::default();
        let mut p = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &device);
        let g = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.25], [1, 2]), &device);
        for want in [[0.899f32, -2.098], [0.798101, -2.195902]] {
            opt.step += 1;
            p = opt.update(&cfg, 0.1, "p", p, g.clone(), 1.0);
            let got: Vec<f32> = p.clone().into_data().try_to_vec_as::<f32>().unwrap();
            assert!(
                (got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5,
                "{got:?} vs {want:?}"
            );
        }
    }
}
