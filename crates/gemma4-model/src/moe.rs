//! Mixture of experts beside the dense MLP (26B-A4B; HF `Gemma4TextRouter`, `Gemma4TextExperts`).
//!
//! Router, per token, on the residual `h` after attention (not the pre-FFN-normed one):
//! `z = RMS(h) ⊙ scale · H^-½`, `p = softmax(z·projᵀ)` in f32, top-k of `p`, renormalised to
//! sum 1, times `per_expert_scale[idx]`. Experts: for each expert, gather the tokens routed to
//! it and run `down(gelu_tanh(gate(x)) ⊙ up(x))` with `gate_up_proj` rows `[0, I)` = gate,
//! `[I, 2I)` = up; outputs are weighted and scattered back (index-add).

use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData, activation::softmax};

use gemma4_kernels::{fused::geglu, matmul};

use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};
use crate::linear::{Adapter, ProjName, Site};
use crate::norm::RmsNorm;
use crate::weights::Weights;

#[derive(Clone, Debug)]
pub struct Router {
    /// `[e, num_experts]`
    pub proj: Tensor<2>,
    /// `[e]`, f32
    pub scale: Tensor<1>,
    /// `[num_experts]`, f32
    pub per_expert_scale: Tensor<1>,
    pub norm: RmsNorm,
    pub top_k: usize,
}

/// The stacked expert weights, in device-sized groups of whole experts (one group unless a
/// layer's stack exceeds [`crate::pieces::MAX_PIECE_BYTES`]: 26B-A4B in f32 is 2.0 GB).
#[derive(Clone, Debug)]
pub struct Experts {
    pub layer: usize,
    /// `[E_g, e, 2·I]` each, experts in order (HF `[E, 2I, H]`, transposed at load)
    pub gate_up_proj: Vec<Tensor<3>>,
    /// `[E_g, I, e]` each (HF `[E, H, I]`)
    pub down_proj: Vec<Tensor<3>>,
}

impl Router {
    pub fn load(w: &mut Weights, cfg: &Gemma4TextConfig, i: usize) -> Result<Self> {
        let (e, n) = (cfg.hidden_size, cfg.num_experts);
        Ok(Self {
            proj: w.get("layers.{i}.router.proj.weight", Some(i), [n, e])?,
            scale: w.get_f32("layers.{i}.router.scale", Some(i), [e])?,
            per_expert_scale: w.get_f32("layers.{i}.router.per_expert_scale", Some(i), [n])?,
            norm: RmsNorm::without_scale(cfg.rms_norm_eps),
            top_k: cfg.top_k_experts,
        })
    }

    /// # Shapes
    /// - h: `[n, e]` → weights `[n, k]` (f32) and expert indices `[n, k]`
    pub fn forward(&self, h: Tensor<2>) -> (Tensor<2>, Tensor<2, Int>) {
        let [n, e] = h.dims();
        let dtype = self.proj.dtype();
        let z = self.norm.forward(h).cast(DType::F32)
            * self.scale.clone().unsqueeze::<2>()
            * (e as f64).powf(-0.5);
        let logits = matmul(z.cast(dtype), self.proj.clone()).cast(DType::F32); // [n, E]
        let (top, idx) = softmax(logits, 1).topk_with_indices(self.top_k, 1); // [n, k]
        let top = top.clone() / top.sum_dim(1);
        let scale = self
            .per_expert_scale
            .clone()
            .select(0, idx.clone().reshape([n * self.top_k]))
            .reshape([n, self.top_k]);
        (top * scale, idx)
    }
}

impl Experts {
    pub fn load(w: &mut Weights, cfg: &Gemma4TextConfig, i: usize) -> Result<Self> {
        let (e, n, m) = (cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size);
        Ok(Self {
            layer: i,
            gate_up_proj: w.get_pieces(
                "layers.{i}.experts.gate_up_proj",
                Some(i),
                [n, 2 * m, e],
                false,
            )?,
            down_proj: w.get_pieces("layers.{i}.experts.down_proj", Some(i), [n, e, m], false)?,
        })
    }

    /// `[E, e, 2·I]` over all groups.
    pub fn gate_up_dims(&self) -> [usize; 3] {
        let [_, e, two_m] = self.gate_up_proj[0].dims();
        [self.gate_up_proj.iter().map(|g| g.dims()[0]).sum(), e, two_m]
    }

    /// The same experts regrouped `per_group` at a time (tests exercise several groups with it).
    pub fn split_experts(self, per_group: usize) -> Result<Self> {
        Ok(Self {
            layer: self.layer,
            gate_up_proj: crate::pieces::resplit(self.gate_up_proj, 0, per_group)?,
            down_proj: crate::pieces::resplit(self.down_proj, 0, per_group)?,
        })
    }

    /// # Shapes
    /// - x: `[n, e]`, weights: `[n, k]`, idx: `[n, k]` → `[n, e]`
    pub fn forward(
        &self,
        x: Tensor<2>,
        weights: Tensor<2>,
        idx: Tensor<2, Int>,
        adapter: &dyn Adapter,
    ) -> Result<Tensor<2>> {
        let x = x.cast(self.gate_up_proj[0].dtype());
        let [n, e] = x.dims();
        let [num_experts, _, two_m] = self.gate_up_dims();
        let m = two_m / 2;
        let k = idx.dims()[1];
        let device = x.device();
        let idx: Vec<i64> = idx
            .into_data()
            .try_to_vec_as::<i64>()
            .map_err(|err| ModelError::Input(format!("router indices: {err:?}")))?;
        let weights = weights.cast(x.dtype()).reshape([n * k]);
        let mut out = Tensor::<2>::zeros([n, e], (&device, x.dtype()));
        for expert in 0..num_experts {
            let slots: Vec<i64> =
                (0..n * k).filter(|&p| idx[p] == expert as i64).map(|p| p as i64).collect();
            if slots.is_empty() {
                continue;
            }
            let count = slots.len();
            let tokens: Vec<i64> = slots.iter().map(|p| p / k as i64).collect();
            let tokens = Tensor::<1, Int>::from_data(TensorData::new(tokens, [count]), &device);
            let slots = Tensor::<1, Int>::from_data(TensorData::new(slots, [count]), &device);
            let xe = x.clone().select(0, tokens.clone()).reshape([1, count, e]); // [1, c, e]
            let gate_up_w = one_expert(&self.gate_up_proj, expert)?.reshape([e, two_m]);
            let down_w = one_expert(&self.down_proj, expert)?.reshape([m, e]);
            let site = |proj| Site { layer: self.layer, proj };
            let gu = adapter.project(site(ProjName::ExpertsGateUp(expert)), xe, &gate_up_w, None); // [1, c, 2m]
            let act = geglu(gu.clone().narrow(2, 0, m), gu.narrow(2, m, m)); // [1, c, m]
            let y = adapter.project(site(ProjName::ExpertsDown(expert)), act, &down_w, None);
            let we = weights.clone().select(0, slots).reshape([count, 1]);
            out = out.select_assign(0, tokens, y.reshape([count, e]) * we, IndexingUpdateOp::Add);
        }
        Ok(out)
    }
}

/// Expert `index` of a grouped stack, `[1, a, b]`.
fn one_expert(groups: &[Tensor<3>], expert: usize) -> Result<Tensor<3>> {
    let mut index = expert;
    for g in groups {
        let n = g.dims()[0];
        if index < n {
            return Ok(g.clone().narrow(0, index, 1));
        }
        index -= n;
    }
    Err(ModelError::Input(format!(
        "expert {expert} beyond the stack of {} experts",
        expert - index
    )))
}
