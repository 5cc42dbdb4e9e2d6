//! Linear projections and the one seam through which adapters (LoRA, in `gemma4-lora`) plug in.
//!
//! The model crate holds no adapter code. Every projection reports its [`Site`] (layer + HF
//! module name) and hands its input and base output to an [`Adapter`], which may add a low-rank
//! term. [`NoAdapter`] returns the base output untouched. Base weights are plain tensors, never
//! Burn `Param`s: they cannot receive gradients.

use burn::tensor::{DType, Tensor};
use gemma4_kernels::linear;

/// HF module names of the projections an adapter may target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjName {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
    /// `experts.gate_up_proj` of expert `e` (PEFT `target_parameters`).
    ExpertsGateUp(usize),
    /// `experts.down_proj` of expert `e`.
    ExpertsDown(usize),
}

impl ProjName {
    /// The HF module path below `layers.{i}.`, e.g. `self_attn.q_proj`.
    pub fn hf_path(self) -> &'static str {
        match self {
            Self::QProj => "self_attn.q_proj",
            Self::KProj => "self_attn.k_proj",
            Self::VProj => "self_attn.v_proj",
            Self::OProj => "self_attn.o_proj",
            Self::GateProj => "mlp.gate_proj",
            Self::UpProj => "mlp.up_proj",
            Self::DownProj => "mlp.down_proj",
            Self::ExpertsGateUp(_) => "experts.gate_up_proj",
            Self::ExpertsDown(_) => "experts.down_proj",
        }
    }
}

/// Where a projection sits in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub layer: usize,
    pub proj: ProjName,
}

/// The adapter seam: sees every projection's input and base output.
pub trait Adapter {
    /// Return the projection's output, `base` plus whatever the adapter adds.
    ///
    /// # Shapes
    /// - x: `[b, s, in]`, base: `[b, s, out]` → `[b, s, out]`
    fn adapt(&self, site: Site, x: &Tensor<3>, base: Tensor<3>) -> Tensor<3>;

    /// The whole projection `x·W (+ bias)` with the adapter's change at `site`. By default the
    /// frozen product, then [`adapt`](Self::adapt). An adapter may compute both at once (one
    /// op whose products share their launches, see `gemma4_kernels::low_rank_linear`); the
    /// result must equal the default's.
    ///
    /// # Shapes
    /// - x: `[b, s, in]`, weight: `[in, out]`, bias: `[out]` → `[b, s, out]`
    fn project(
        &self,
        site: Site,
        x: Tensor<3>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Tensor<3> {
        let base = linear(x.clone(), weight.clone(), bias.cloned());
        self.adapt(site, &x, base)
    }
}

/// The plain model: every projection returns its base output.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdapter;

impl Adapter for NoAdapter {
    fn adapt(&self, _site: Site, _x: &Tensor<3>, base: Tensor<3>) -> Tensor<3> {
        base
    }
}

/// The dtype of the residual stream for weights of dtype `weights`: f32 under f16 weights
/// (f16's range, ±65504, is too narrow for Gemma's residual stream and MLP products), else the
/// weight dtype (bf16 has f32's range, as in HF).
pub fn residual_dtype(weights: DType) -> DType {
    if weights == DType::F16 { DType::F32 } else { weights }
}

/// `y = x·Wᵀ + b`, with `W` kept as `[in, out]` (transposed once at load).
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[in, out]`
    pub weight: Tensor<2>,
    /// `[out]`, present when the config has `attention_bias`.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// The input is cast to the weight dtype (the residual stream may be wider, see
    /// `residual_dtype`); the output has the weight dtype.
    ///
    /// # Shapes
    /// - x: `[b, s, in]` → `[b, s, out]`
    pub fn forward(&self, x: Tensor<3>, site: Site, adapter: &dyn Adapter) -> Tensor<3> {
        let x = x.cast(self.weight.dtype());
        adapter.project(site, x, &self.weight, self.bias.as_ref())
    }

    /// Number of stored parameters.
    pub fn num_params(&self) -> usize {
        self.weight.shape().num_elements() + self.bias.as_ref().map_or(0, |b| b.dims()[0])
    }
}
