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
    /// One update of `param` (key `key`) with gradient `grad` times `factor`: see
    /// [`AdamW::update_all`].
    pub fn update(
        &mut self,
        cfg: &OptimSection,
        lr: f64,
        key: &str,
        param: Tensor<2>,
        grad: Tensor<2>,
        factor: &Tensor<1>,
    ) -> Tensor<2> {
        let items = vec![(key.to_owned(), param, grad)];
        self.update_all(cfg, lr, items, factor).remove(0)
    }

    /// One update of each `(key, param, grad)` with the gradient times `factor` (`[1]`, the
    /// unscale-and-clip factor of [`clip_factor`], read on the device); returns the new values
    /// in order. The arithmetic is [`gemma4_kernels::fused::adamw_many`]'s: several tensors per
    /// kernel on a GPU.
    pub fn update_all(
        &mut self,
        cfg: &OptimSection,
        lr: f64,
        items: Vec<(String, Tensor<2>, Tensor<2>)>,
        factor: &Tensor<1>,
    ) -> Vec<Tensor<2>> {
        let step = AdamwStep {
            lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            step: self.step,
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
        let updated = gemma4_kernels::fused::adamw_many(items, factor, &step);
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

/// Each gradient's `Σ g²` in key order, left on the device as partial sums `[n, parts]` (one
/// kernel per eight tensors on a GPU; [`tensor_sums`] adds them up once read). `None` for no
/// gradients.
pub fn square_sums(grads: &BTreeMap<String, Tensor<2>>) -> Option<Tensor<2>> {
    let tensors: Vec<&Tensor<2>> = grads.values().collect();
    gemma4_kernels::fused::square_sums(&tensors)
}

/// The unscale-and-clip factor of a step, computed on the device from the scaled gradients'
/// [`square_sums`] `parts`, so that AdamW queues behind the backward pass without a read-back:
/// the true norm is `‖g‖ = √Σparts / scale`, clipped as `torch.nn.utils.clip_grad_norm_` does
/// (`min(1, max_norm / (‖g‖ + 1e-6))`; `max_norm` 0: no clip), and the factor is the clip over
/// `scale`. Non-finite sums give a factor that must not be applied: [`LossScale::unscale`]
/// decides that once the sums are read.
///
/// # Shapes
/// - parts: `[n, p]` (f32) → `[1]` (f32)
pub fn clip_factor(parts: &Tensor<2>, scale: f64, max_norm: f64) -> Tensor<1> {
    // One row summed in a fixed order (`sum` may add partial sums atomically, in any order).
    let total = parts.clone().reshape([1, parts.dims().iter().product::<usize>()]).sum_dim(1);
    let norm = total.reshape([1]).sqrt().div_scalar(scale);
    let clip = if max_norm > 0.0 {
        norm.add_scalar(1e-6).recip().mul_scalar(max_norm).clamp_max(1.0)
    } else {
        norm.ones_like()
    };
    clip.div_scalar(scale)
}

/// Each tensor's `Σ g²` in f64 from its row of [`square_sums`]' partial sums, read back as
/// `values` (`parts` per tensor).
pub fn tensor_sums(values: &[f32], parts: usize) -> Vec<f64> {
    values.chunks(parts.max(1)).map(|p| p.iter().map(|&x| f64::from(x)).sum()).collect()
}

/// Global L2 norm of all gradients from their [`tensor_sums`], in f64.
pub fn global_norm(sums: &[f64]) -> f64 {
    sums.iter().sum::<f64>().sqrt()
}

/// Keys (of `keys`, in order) whose [`tensor_sums`] entry is not finite: a non-finite value, or
/// squares beyond f32's range. These are the tensors that made the global norm overflow; no
/// further read-back.
pub fn overflowed_keys(keys: &[String], sums: &[f64]) -> Vec<String> {
    keys.iter().zip(sums).filter(|(_, s)| !s.is_finite()).map(|(k, _)| k.clone()).collect()
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

    /// From the global norm of the (scaled) gradients: `Some(norm)`, the true norm (the
    /// gradients are unscaled and clipped by [`clip_factor`]); `None` when they overflowed (skip
    /// the step: the scale is halved). A non-finite norm at scale 1 is returned as is.
    pub fn unscale(&mut self, scaled_norm: f64) -> Option<f64> {
        // At scale 1 there is nothing left to halve: the caller sees the non-finite norm.
        if self.enabled && !scaled_norm.is_finite() && self.scale > 1.0 {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            return None;
        }
        let norm = scaled_norm / self.scale;
        if self.enabled {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        }
        Some(norm)
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
        assert!(s.unscale(f64::INFINITY).is_none());
        assert_eq!(s.scale, LossScale::INIT / 2.0);
        let norm = s.unscale(3.0 * s.scale).expect("finite");
        assert!((norm - 3.0).abs() < 1e-9, "{norm}");
        for _ in 1..LossScale::GROWTH_INTERVAL {
            s.unscale(1.0);
        }
        assert_eq!(s.scale, LossScale::INIT, "doubles after the growth interval of good steps");
        let mut off = LossScale::new(DType::F32);
        assert!(
            off.unscale(f64::NAN).is_some(),
            "inert without f16: a non-finite norm is the caller's to handle"
        );
        assert_eq!(off.scale, 1.0);
    }

    #[test]
    fn the_clip_factor_unscales_and_clips_on_the_device() {
        let device = Device::flex();
        let factor = |sums: Vec<f32>, scale: f64, max_norm: f64| -> f64 {
            let parts =
                Tensor::<2>::from_data(TensorData::new(sums.clone(), [sums.len(), 1]), &device);
            f64::from(clip_factor(&parts, scale, max_norm).into_scalar::<f32>())
        };
        // Scaled norm 3·scale (9·scale² in two parts): the true norm 3 clipped to 1, unscaled.
        let scale = 1024.0;
        let f = factor(vec![4.0 * 1024.0 * 1024.0, 5.0 * 1024.0 * 1024.0], scale, 1.0);
        assert!((f * scale - 1.0 / (3.0 + 1e-6)).abs() < 1e-6, "{f}");
        // Under the clip, or no clip: only the unscale.
        assert!((factor(vec![0.25 * 1024.0 * 1024.0], scale, 1.0) * scale - 1.0).abs() < 1e-7);
        assert!((factor(vec![9.0 * 1024.0 * 1024.0], scale, 0.0) * scale - 1.0).abs() < 1e-7);
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
        let parts = square_sums(&grads).expect("four gradients");
        let per = parts.dims()[1];
        let sums = tensor_sums(&parts.into_data().iter::<f32>().collect::<Vec<_>>(), per);
        assert_eq!(sums[0], 5.0);
        assert_eq!(sums[2], 25.0);
        assert!(!global_norm(&sums).is_finite(), "one overflow makes the norm overflow");
        let keys: Vec<String> = grads.keys().cloned().collect();
        assert_eq!(overflowed_keys(&keys, &sums), ["b", "d"]);
        let finite: Vec<f64> = sums.iter().map(|s| if s.is_finite() { *s } else { 0.0 }).collect();
        assert_eq!(global_norm(&finite), 30f64.sqrt());
        assert!(overflowed_keys(&keys, &finite).is_empty());
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
        let one = Tensor::<1>::ones([1], &device);
        let g = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.25], [1, 2]), &device);
        for want in [[0.899f32, -2.098], [0.798101, -2.195902]] {
            opt.step += 1;
            p = opt.update(&cfg, 0.1, "p", p, g.clone(), &one);
            let got: Vec<f32> = p.clone().into_data().try_to_vec_as::<f32>().unwrap();
            assert!(
                (got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5,
                "{got:?} vs {want:?}"
            );
        }
    }
}
