//! AdamW over the adapter's tensors only (PyTorch `torch.optim.AdamW` semantics: decoupled weight
//! decay `p ← p·(1 − lr·wd)`, bias-corrected moments), plus the global-norm gradient clip.
//! Written out rather than Burn's optimizer so its state is plain tensors by PEFT key: saved in
//! the trainer state and restored bit for bit on `--resume`.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use crate::recipe::OptimSection;

/// First and second moments per adapter tensor, and the step count.
#[derive(Clone, Debug, Default)]
pub struct AdamW {
    pub step: u64,
    pub m: BTreeMap<String, Tensor<2>>,
    pub v: BTreeMap<String, Tensor<2>>,
}

impl AdamW {
    /// One update of `param` (key `key`) with gradient `grad`; returns the new value.
    pub fn update(&mut self, cfg: &OptimSection, lr: f64, key: &str, param: Tensor<2>, grad: Tensor<2>) -> Tensor<2> {
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let m = match self.m.remove(key) {
            Some(m) => m.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1),
            None => grad.clone().mul_scalar(1.0 - b1),
        };
        let v = match self.v.remove(key) {
            Some(v) => v.mul_scalar(b2) + grad.clone().square().mul_scalar(1.0 - b2),
            None => grad.square().mul_scalar(1.0 - b2),
        };
        let t = self.step as i32;
        let m_hat = m.clone().div_scalar(1.0 - b1.powi(t));
        let v_hat = v.clone().div_scalar(1.0 - b2.powi(t));
        let decayed = if cfg.weight_decay > 0.0 { param.mul_scalar(1.0 - lr * cfg.weight_decay) } else { param };
        let new = decayed - m_hat.div(v_hat.sqrt().add_scalar(cfg.eps)).mul_scalar(lr);
        self.m.insert(key.to_owned(), m);
        self.v.insert(key.to_owned(), v);
        new
    }
}

/// Global L2 norm of all gradients, and the factor that clips it to `max_norm` (1 when under).
pub fn clip_factor(grads: &BTreeMap<String, Tensor<2>>, max_norm: f64) -> (f64, f64) {
    // One device reduction and one read-back (not one per tensor).
    let sq = grads.values().map(|g| g.clone().square().sum()).reduce(|a, b| a + b);
    let norm = sq.map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt());
    let factor = if max_norm > 0.0 && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 };
    (norm, factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn adamw_matches_pytorch_first_steps() {
        // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), p = [1, -2], g = [0.5, 0.25] twice:
        // step 1: p = [0.899, -2.098]; step 2 with the same g: p = [0.798101, -2.195902]
        let device = Device::flex();
        let cfg = OptimSection { lr: 0.1, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, max_grad_norm: 0.0 };
        let mut opt = AdamW::default();
        let mut p = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &device);
        let g = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.25], [1, 2]), &device);
        for want in [[0.899f32, -2.098], [0.798101, -2.195902]] {
            opt.step += 1;
            p = opt.update(&cfg, 0.1, "p", p, g.clone());
            let got: Vec<f32> = p.clone().into_data().try_to_vec_as::<f32>().unwrap();
            assert!((got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
