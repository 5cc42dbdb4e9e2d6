//! One decoder layer, in HF order (`Gemma4TextDecoderLayer.forward`):
//!
//! ```text
//!  h ─┬─ input_layernorm ─ attention ─ post_attention_layernorm ─(+)─┬─ pre_feedforward_layernorm ─ mlp ─┐
//!     └──────────────────────────────────────────────────────────────┘  │ (MoE: ─ post_ff_norm_1 ─┐        │
//!                                                                       │  router(h), pre_ff_norm_2 ─ experts ─ post_ff_norm_2 ─(+))
//!  ┌─ post_feedforward_layernorm ─(+ residual)─ [PLE: gate ─ gelu ─ ⊙p_l ─ projection ─ post_per_layer_input_norm ─(+)] ─ × layer_scalar
//! ```
//! `layer_scalar` multiplies the whole stream, residual included.

use burn::tensor::Tensor;
use gemma4_kernels::fused::geglu;

use crate::attention::{Attention, AttnInputs, KeyValue};
use crate::cache::LayerCache;
use crate::config::{Gemma4TextConfig, LayerSpec};
use crate::error::Result;
use crate::linear::{Adapter, Linear};
use crate::mlp::Mlp;
use crate::moe::{Experts, Router};
use crate::norm::RmsNorm;
use crate::weights::Weights;

/// The MoE branch beside the dense MLP.
#[derive(Clone, Debug)]
pub struct MoeBlock {
    pub router: Router,
    pub experts: Experts,
    pub pre_feedforward_layernorm_2: RmsNorm,
    pub post_feedforward_layernorm_1: RmsNorm,
    pub post_feedforward_layernorm_2: RmsNorm,
}

/// The per-layer-input gate (PLE).
#[derive(Clone, Debug)]
pub struct PerLayerInput {
    /// `[e, D]`
    pub per_layer_input_gate: Linear,
    /// `[D, e]`
    pub per_layer_projection: Linear,
    pub post_per_layer_input_norm: RmsNorm,
}

#[derive(Clone, Debug)]
pub struct DecoderLayer {
    pub spec: LayerSpec,
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    pub pre_feedforward_layernorm: RmsNorm,
    pub post_feedforward_layernorm: RmsNorm,
    pub moe: Option<MoeBlock>,
    pub per_layer_input: Option<PerLayerInput>,
    /// `[1]`, f32; `None` (= 1) when the config has no `layer_scalar` (Gemma 3).
    pub layer_scalar: Option<Tensor<1>>,
}

impl DecoderLayer {
    pub fn load(w: &mut Weights, cfg: &Gemma4TextConfig, i: usize) -> Result<Self> {
        let spec = cfg.layers[i].clone();
        let (e, eps, off) = (cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_weight_offset);
        let mut norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::with_offset(
                w.get_f32(&format!("layers.{{i}}.{name}.weight"), Some(i), [e])?,
                eps,
                off,
            ))
        };
        let input_layernorm = norm("input_layernorm")?;
        let post_attention_layernorm = norm("post_attention_layernorm")?;
        let pre_feedforward_layernorm = norm("pre_feedforward_layernorm")?;
        let post_feedforward_layernorm = norm("post_feedforward_layernorm")?;
        let moe = if cfg.enable_moe_block {
            Some(MoeBlock {
                pre_feedforward_layernorm_2: norm("pre_feedforward_layernorm_2")?,
                post_feedforward_layernorm_1: norm("post_feedforward_layernorm_1")?,
                post_feedforward_layernorm_2: norm("post_feedforward_layernorm_2")?,
                router: Router::load(w, cfg, i)?,
                experts: Experts::load(w, cfg, i)?,
            })
        } else {
            None
        };
        let d = cfg.hidden_size_per_layer_input;
        let per_layer_input = if d > 0 {
            Some(PerLayerInput {
                per_layer_input_gate: Linear {
                    weight: w.get("layers.{i}.per_layer_input_gate.weight", Some(i), [d, e])?,
                    bias: None,
                },
                per_layer_projection: Linear {
                    weight: w.get("layers.{i}.per_layer_projection.weight", Some(i), [e, d])?,
                    bias: None,
                },
                post_per_layer_input_norm: RmsNorm::new(
                    w.get_f32("layers.{i}.post_per_layer_input_norm.weight", Some(i), [e])?,
                    eps,
                ),
            })
        } else {
            None
        };
        Ok(Self {
            self_attn: Attention::load(w, cfg, &spec, i)?,
            mlp: Mlp::load(w, cfg, &spec, i)?,
            input_layernorm,
            post_attention_layernorm,
            pre_feedforward_layernorm,
            post_feedforward_layernorm,
            moe,
            per_layer_input,
            layer_scalar: if cfg.layer_scalar {
                Some(w.get_f32("layers.{i}.layer_scalar", Some(i), [1])?)
            } else {
                None
            },
            spec,
        })
    }

    /// Run the layer. `shared_kv` is the donor's K/V on KV-shared layers; the layer's own K/V
    /// (after the cache update, when a cache is given) is returned for later layers that use it
    /// as donor.
    ///
    /// # Shapes
    /// - h: `[b, s, e]`, per_layer_input: `[b, s, D]` → `[b, s, e]`
    pub fn forward(
        &self,
        h: Tensor<3>,
        per_layer_input: Option<Tensor<3>>,
        shared_kv: Option<&KeyValue>,
        inp: &AttnInputs,
        cache: Option<&mut LayerCache>,
        adapter: &dyn Adapter,
    ) -> Result<(Tensor<3>, Option<KeyValue>)> {
        let a = self.input_layernorm.forward(h.clone());
        let own_kv = match (self.self_attn.key_value(&a, inp, adapter), cache) {
            (Some((k, v)), Some(c)) => Some(c.update(k, v)), // cached positions + this step's
            (kv, _) => kv,
        };
        let kv = match (&own_kv, shared_kv) {
            (Some(kv), _) | (None, Some(kv)) => kv,
            (None, None) => {
                return Err(crate::error::ModelError::Input(format!(
                    "layer {} is KV-shared but got no donor K/V",
                    self.self_attn.layer
                )));
            }
        };
        let a = self.self_attn.attend(a, kv, inp, adapter);
        let h = h.clone() + self.post_attention_layernorm.forward(a).cast(h.dtype());

        let mut f = self.mlp.forward(self.pre_feedforward_layernorm.forward(h.clone()), adapter);
        if let Some(moe) = &self.moe {
            let [b, s, e] = h.dims();
            let flat = h.clone().reshape([b * s, e]);
            let (weights, idx) = moe.router.forward(flat.clone()); // router sees the un-normed residual
            let x2 = moe.pre_feedforward_layernorm_2.forward(flat);
            let m = moe.experts.forward(x2, weights, idx, adapter)?.reshape([b, s, e]);
            f = moe.post_feedforward_layernorm_1.forward(f.clone())
                + moe.post_feedforward_layernorm_2.forward(m).cast(f.dtype());
        }
        let mut h = h.clone() + self.post_feedforward_layernorm.forward(f).cast(h.dtype());

        if let (Some(ple), Some(p)) = (&self.per_layer_input, per_layer_input) {
            let w = ple.per_layer_input_gate.weight.clone();
            let g = geglu(
                gemma4_kernels::linear(h.clone().cast(w.dtype()), w, None),
                p.cast(ple.per_layer_projection.weight.dtype()),
            );
            let g = gemma4_kernels::linear(g, ple.per_layer_projection.weight.clone(), None);
            h = h.clone() + ple.post_per_layer_input_norm.forward(g).cast(h.dtype());
        }
        let dtype = h.dtype();
        match &self.layer_scalar {
            Some(s) => Ok((h * s.clone().cast(dtype).unsqueeze::<3>(), own_kv)),
            None => Ok((h, own_kv)),
        }
    }
}
