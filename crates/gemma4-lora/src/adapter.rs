//! The LoRA adapter: low-rank factors for the selected projections, plugged into the model's
//! [`Adapter`] seam. The training step computes `x·Aᵀ·Bᵀ·scale` — never a full-size weight delta.
//!
//! Factors are kept in PEFT's orientation (`lora_A` `[r·E, in]`, `lora_B` `[out, r·E]`, `E` = 1
//! for plain projections), keyed by their PEFT tensor name, so saving, loading and gradients need
//! no translation. Experts follow PEFT's `ParamWrapper` layout: expert `e` uses rows
//! `e·r .. (e+1)·r` of `lora_A` and columns `{ρ·E + e : ρ < r}` of `lora_B`
//! (`lora_B.reshape(out, r, E)[:, :, e]`).

use std::collections::BTreeMap;

use burn::tensor::{DType, Distribution, Tensor, TensorData};
use gemma4_kernels::{linear, linear_add_to, linear_to, low_rank_add, low_rank_linear};
use gemma4_model::{Adapter, ProjName, Site};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::LoraConfig;

/// One adapted projection (or one expert parameter, all experts at once).
#[derive(Clone, Debug)]
pub struct LoraModule {
    /// PEFT module path (key prefix before `.lora_A.weight`), e.g.
    /// `base_model.model.model.layers.3.self_attn.q_proj`.
    pub key: String,
    /// `[r·E, in]`
    pub lora_a: Tensor<2>,
    /// `[out, r·E]`
    pub lora_b: Tensor<2>,
    /// 1 for a plain projection.
    pub num_experts: usize,
}

impl LoraModule {
    pub fn a_key(&self) -> String {
        format!("{}.lora_A.weight", self.key)
    }
    pub fn b_key(&self) -> String {
        format!("{}.lora_B.weight", self.key)
    }

    /// PEFT initialisation: A Kaiming-uniform (a = √5 → bound 1/√in), B zero.
    pub fn init(
        key: String,
        in_f: usize,
        out_f: usize,
        rank: usize,
        num_experts: usize,
        rng: &mut ChaCha8Rng,
        device: &burn::tensor::Device,
    ) -> Self {
        let bound = 1.0 / (in_f as f32).sqrt();
        let a: Vec<f32> =
            (0..rank * num_experts * in_f).map(|_| rng.random_range(-bound..bound)).collect();
        Self {
            key,
            lora_a: Tensor::from_data(TensorData::new(a, [rank * num_experts, in_f]), device),
            lora_b: Tensor::zeros([out_f, rank * num_experts], device),
            num_experts,
        }
    }

    /// The factors of expert `e` (or the whole module when `E` = 1): `([r, in], [out, r])`.
    pub(crate) fn factors(&self, expert: Option<usize>) -> (Tensor<2>, Tensor<2>) {
        match expert {
            None => (self.lora_a.clone(), self.lora_b.clone()),
            Some(e) => {
                let [re, inp] = self.lora_a.dims();
                let r = re / self.num_experts;
                let out = self.lora_b.dims()[0];
                let a = self.lora_a.clone().narrow(0, e * r, r);
                let b = self
                    .lora_b
                    .clone()
                    .reshape([out, r, self.num_experts])
                    .narrow(2, e, 1)
                    .reshape([out, r]);
                debug_assert_eq!(a.dims(), [r, inp]);
                (a, b)
            }
        }
    }
}

/// Where an adapter module applies: a projection site, or an expert parameter of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleSite {
    Proj(Site),
    /// `experts.gate_up_proj` (`down = false`) or `experts.down_proj` of layer `i`.
    Experts {
        layer: usize,
        down: bool,
    },
}

impl ModuleSite {
    fn of(site: Site) -> (Self, Option<usize>) {
        match site.proj {
            ProjName::ExpertsGateUp(e) => {
                (Self::Experts { layer: site.layer, down: false }, Some(e))
            }
            ProjName::ExpertsDown(e) => (Self::Experts { layer: site.layer, down: true }, Some(e)),
            _ => (Self::Proj(site), None),
        }
    }
}

/// A set of LoRA modules with one config.
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    pub config: LoraConfig,
    pub modules: BTreeMap<ModuleSite, LoraModule>,
    /// Dropout on the adapter input, active only while training.
    pub training: bool,
}

impl LoraAdapter {
    /// Scale applied to every module's output (`alpha/r` or rsLoRA `alpha/√r`).
    pub fn scale(&self) -> f64 {
        self.config.scale()
    }

    /// Every factor tensor, by PEFT key, in key order.
    pub fn tensors(&self) -> BTreeMap<String, Tensor<2>> {
        let mut out = BTreeMap::new();
        for m in self.modules.values() {
            out.insert(m.a_key(), m.lora_a.clone());
            out.insert(m.b_key(), m.lora_b.clone());
        }
        out
    }

    /// Replace every factor through `f(key, tensor)` (optimizer updates, `require_grad`, device moves).
    pub fn map_tensors(&mut self, mut f: impl FnMut(&str, Tensor<2>) -> Tensor<2>) {
        for m in self.modules.values_mut() {
            let (ka, kb) = (m.a_key(), m.b_key());
            m.lora_a = f(&ka, m.lora_a.clone());
            m.lora_b = f(&kb, m.lora_b.clone());
        }
    }

    /// Number of trainable values.
    pub fn num_params(&self) -> usize {
        self.modules
            .values()
            .map(|m| m.lora_a.shape().num_elements() + m.lora_b.shape().num_elements())
            .sum()
    }
}

impl Adapter for LoraAdapter {
    fn adapt(&self, site: Site, x: &Tensor<3>, base: Tensor<3>) -> Tensor<3> {
        let (module_site, expert) = ModuleSite::of(site);
        let Some(module) = self.modules.get(&module_site) else { return base };
        let (a, b) = module.factors(expert);
        let dtype = base.dtype();
        // The two small products accumulate in f32 and write f32 except the delta: their outputs
        // are the only weight gradients of a step, and under f16 loss scaling they overflow f16
        // (measured: a k_proj B gradient 2400× the median), so f16 and f32 runs take f32
        // inputs. bf16 has f32's range: on cuBLAS its products read the bf16 activations as
        // they are (no f32 copy of x is made or kept) and write the delta in bf16. The scale
        // is cuBLAS's `alpha` (or folded into B), never a pass over the `[b, s, out]` delta.
        let bf16_inputs = gemma4_kernels::bf16_lora_inputs(&x.device(), dtype);
        let dropout = self.training && self.config.lora_dropout > 0.0;
        if !bf16_inputs
            && !dropout
            && let Some(y) = low_rank_add(x, &a, &b, &base, self.scale())
        {
            return y; // one op: `x` as it is, the change added as written, factors' grads by rows
        }
        let wide = a.dtype(); // the factors' (f32)
        let compute = if bf16_inputs { DType::BF16 } else { wide };
        let mut x = if bf16_inputs { x.clone() } else { x.clone().cast(compute) };
        let p = self.config.lora_dropout;
        if self.training && p > 0.0 {
            let keep =
                Tensor::<3>::random(x.shape(), Distribution::Bernoulli(1.0 - p), &x.device());
            let keep = keep.div_scalar(1.0 - p).cast(x.dtype());
            x = x * keep;
        }
        // `x·Aᵀ` is written in the compute dtype: the second product and the backward round it
        // to that anyway, so an f32 copy would only cost casts. `s·(xa·Bᵀ)` is added into
        // `base` as it is written (cuBLAS `beta = 1`).
        let xa = linear_to(x, a.transpose(), compute, compute); // [b, s, r]
        linear_add_to(xa, b.transpose(), base, compute, self.scale()) // [b, s, out]
    }

    fn project(
        &self,
        site: Site,
        x: Tensor<3>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Tensor<3> {
        // One op for the frozen product and the change where the device takes it (the cuBLAS
        // route; bf16 inputs as `adapt` takes them, or f32): the same sum as `adapt`'s, its
        // products sharing their launches. Dropout and biases take the general path.
        let (module_site, expert) = ModuleSite::of(site);
        let dropout = self.training && self.config.lora_dropout > 0.0;
        if let (Some(module), None, false) = (self.modules.get(&module_site), bias, dropout) {
            let dtype = x.dtype();
            let inputs =
                dtype == DType::F32 || gemma4_kernels::bf16_lora_inputs(&x.device(), dtype);
            if inputs && gemma4_kernels::fuses_low_rank(&x, weight) {
                let (a, b) = module.factors(expert);
                let fused = low_rank_linear(x.clone(), weight.clone(), a, b, self.scale());
                if let Some(y) = fused {
                    return y;
                }
            }
        }
        let base = linear(x.clone(), weight.clone(), bias.cloned());
        self.adapt(site, &x, base)
    }
}

/// A seeded RNG for adapter initialisation.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
