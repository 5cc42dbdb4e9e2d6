//! Gemma 4 self-attention (HF `Gemma4TextAttention`).
//!
//! q/k get RMSNorms with weights, v a scale-free RMSNorm; RoPE on q and k after their norms;
//! the score scale is exactly 1.0 (the norms absorb it); no attention softcap. Gemma 3
//! (`Gemma3Attention`) differs only by config values: no V norm, scale `query_pre_attn_scalar^-½`. Full layers with
//! `attention_k_eq_v` have no `v_proj`: V is the raw K projection (before `k_norm`/RoPE).
//! KV-shared layers own only `q_proj`, `q_norm`, `o_proj` and attend over their donor's K/V.
//! GQA: query head `h` uses KV head `h / (heads / kv_heads)`; we fold the group into the query
//! rows instead of copying K/V (`repeat_kv`). On a GPU without a cache (training, evaluation)
//! the attention is gemma4-kernels' flash attention: the mask rule evaluated in the kernel, no
//! `[s, t]` scores ([`AttnMask::Rule`]); elsewhere the plain ops over an additive mask bias.

use burn::tensor::{Bool, DType, Int, Tensor};

use crate::config::{Gemma4TextConfig, LayerSpec};
use crate::error::Result;
use gemma4_kernels::reference::{AttentionRule, TokenMasks};
use gemma4_kernels::{fused::flash_attention, fused::masked_softmax, matmul};

use crate::linear::{Adapter, Linear, ProjName, Site};
use crate::norm::RmsNorm;
use crate::rope::apply_rotary;
use crate::weights::Weights;

/// K/V projections of a layer that computes its own keys and values.
#[derive(Clone, Debug)]
pub struct KvProj {
    pub k_proj: Linear,
    /// `None` on k_eq_v layers.
    pub v_proj: Option<Linear>,
    pub k_norm: RmsNorm,
    /// Scale-free V norm (Gemma 4); `None` for Gemma 3.
    pub v_norm: Option<RmsNorm>,
}

/// One layer's attention.
#[derive(Clone, Debug)]
pub struct Attention {
    pub layer: usize,
    pub q_proj: Linear,
    pub q_norm: RmsNorm,
    /// `None` on KV-shared layers.
    pub kv: Option<KvProj>,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies `q·kᵀ` (config `attention_scale`: 1.0 Gemma 4, `query_pre_attn_scalar^-½` Gemma 3).
    pub scale: f64,
}

/// Keys and values after norms and RoPE. # Shapes: `[b, kv, t, d]` each.
pub type KeyValue = (Tensor<4>, Tensor<4>);

/// Per-forward inputs shared by all layers of one type.
#[derive(Clone, Debug)]
pub struct AttnInputs {
    /// `[1, s, 1, d]`
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    /// The mask, built once per forward and layer type, not once per layer.
    pub mask: AttnMask,
    /// Causal sliding window `W` of a full-sequence pass (no cache): queries may then attend in
    /// blocks of `W` to their `≤ 2W − 1` possible keys instead of all `t` (see
    /// [`blocks_queries`] and [`windowed`]).
    pub window: Option<usize>,
}

/// How one layer type's attention is masked.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per layer type and forward: its size does not matter
pub enum AttnMask {
    /// The mask as an additive f32 bias (see [`mask_bias`]), for the plain-op attention.
    /// `[b or 1, 1, s, t]`
    Bias(Tensor<4>),
    /// The rule (its `scale` is each layer's own) and the per-token masks `[b, t]` that the
    /// flash attention kernel evaluates itself: no `[s, t]` mask or scores in memory.
    Rule { rule: AttentionRule, valid: Option<Tensor<2, Int>>, segments: Option<Tensor<2, Int>> },
}

fn load_linear(
    w: &mut Weights,
    name: &str,
    i: usize,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<Linear> {
    let weight = w.get(&format!("layers.{{i}}.self_attn.{name}.weight"), Some(i), [out, inp])?;
    let bias = if bias {
        Some(w.get(&format!("layers.{{i}}.self_attn.{name}.bias"), Some(i), [out])?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

impl Attention {
    pub fn load(
        w: &mut Weights,
        cfg: &Gemma4TextConfig,
        spec: &LayerSpec,
        i: usize,
    ) -> Result<Self> {
        let (e, h, kv, d) =
            (cfg.hidden_size, cfg.num_attention_heads, spec.num_key_value_heads, spec.head_dim);
        let bias = cfg.attention_bias;
        let (eps, off) = (cfg.rms_norm_eps, cfg.norm_weight_offset);
        let kv_proj = if spec.kv_donor.is_none() {
            Some(KvProj {
                k_proj: load_linear(w, "k_proj", i, kv * d, e, bias)?,
                v_proj: if spec.k_eq_v {
                    None
                } else {
                    Some(load_linear(w, "v_proj", i, kv * d, e, bias)?)
                },
                k_norm: RmsNorm::with_offset(
                    w.get_f32("layers.{i}.self_attn.k_norm.weight", Some(i), [d])?,
                    eps,
                    off,
                ),
                v_norm: cfg.v_norm.then(|| RmsNorm::without_scale(eps)),
            })
        } else {
            None
        };
        Ok(Self {
            layer: i,
            q_proj: load_linear(w, "q_proj", i, h * d, e, bias)?,
            q_norm: RmsNorm::with_offset(
                w.get_f32("layers.{i}.self_attn.q_norm.weight", Some(i), [d])?,
                eps,
                off,
            ),
            kv: kv_proj,
            o_proj: load_linear(w, "o_proj", i, e, h * d, bias)?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
            scale: cfg.attention_scale,
        })
    }

    fn site(&self, proj: ProjName) -> Site {
        Site { layer: self.layer, proj }
    }

    /// Keys and values of this layer's own projections (none for KV-shared layers).
    ///
    /// # Shapes
    /// - x: `[b, s, e]` → `([b, kv, s, d], [b, kv, s, d])`
    pub fn key_value(
        &self,
        x: &Tensor<3>,
        inp: &AttnInputs,
        adapter: &dyn Adapter,
    ) -> Option<KeyValue> {
        let kv = self.kv.as_ref()?;
        let [b, s, _] = x.dims();
        let shape = [b, s, self.num_kv_heads, self.head_dim];
        let k_raw =
            kv.k_proj.forward(x.clone(), self.site(ProjName::KProj), adapter).reshape(shape); // [b, s, kv, d]
        let v_raw = match &kv.v_proj {
            Some(v_proj) => {
                v_proj.forward(x.clone(), self.site(ProjName::VProj), adapter).reshape(shape)
            }
            None => k_raw.clone(), // k_eq_v: V from the raw K projection
        };
        let k = apply_rotary(kv.k_norm.forward(k_raw), &inp.cos, &inp.sin);
        let v = match &kv.v_norm {
            Some(norm) => norm.forward(v_raw),
            None => v_raw,
        };
        Some((k.swap_dims(1, 2), v.swap_dims(1, 2))) // [b, kv, s, d]
    }

    /// Attend with this layer's queries over `keys`/`values` (its own, or its donor's).
    ///
    /// # Shapes
    /// - x: `[b, s, e]`, k/v: `[b, kv, t, d]` → `[b, s, e]`
    pub fn attend(
        &self,
        x: Tensor<3>,
        (k, v): &KeyValue,
        inp: &AttnInputs,
        adapter: &dyn Adapter,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, d) = (self.num_heads, self.head_dim);
        let q = self.q_proj.forward(x, self.site(ProjName::QProj), adapter).reshape([b, s, h, d]);
        let q = apply_rotary(self.q_norm.forward(q), &inp.cos, &inp.sin).swap_dims(1, 2); // [b, h, s, d]
        let o = match (&inp.mask, inp.window) {
            (AttnMask::Rule { rule, valid, segments }, _) => {
                let rule = AttentionRule { scale: self.scale, ..*rule };
                let masks = TokenMasks { valid: valid.as_ref(), segments: segments.as_ref() };
                flash_attention(q, k.clone(), v.clone(), &rule, masks)
            }
            (AttnMask::Bias(bias), Some(w)) if blocks_queries(w, s) => {
                windowed(q, k.clone(), v.clone(), bias, self.scale, w)
            }
            (AttnMask::Bias(bias), _) => {
                scaled_dot_product(q, k.clone(), v.clone(), bias.clone(), self.scale)
            }
        }; // [b, h, s, d]
        let o = o.swap_dims(1, 2).reshape([b, s, h * d]);
        self.o_proj.forward(o, self.site(ProjName::OProj), adapter)
    }
}

/// Whether a causal sliding-window pass of window `w` over `s` tokens attends in query blocks
/// ([`windowed`]) rather than over the whole `[s, s]` scores. Blocks save scores (memory and
/// FLOPs: `2·s·w` instead of `s²`) but multiply the launches: each block runs its own products,
/// softmax, slices and their backward (about 4× the kernels of one full pass at 4 blocks). At
/// `s ≤ 4w` (E2B/E4B at 2048, w 512) the whole pass is cheaper on a GPU, where the step is bound
/// by launching kernels; longer sequences block, where the `[s, s]` scores would dominate
/// memory. The training memory plan reads the same rule.
pub fn blocks_queries(w: usize, s: usize) -> bool {
    s > 4 * w
}

/// The boolean mask (true = masked out) as the additive f32 bias attention adds to its scores:
/// −1e30 absorbs any score and keeps fully masked rows (padding queries) finite instead of NaN.
/// A constant, so the tape keeps nothing for it (a `mask_fill` on the scores would keep a mask
/// expanded to the scores' size in every layer).
///
/// # Shapes
/// - mask: `[b or 1, 1, s, t]` → `[b or 1, 1, s, t]`
pub fn mask_bias(mask: Tensor<4, Bool>) -> Tensor<4> {
    Tensor::<4>::zeros(mask.shape(), (&mask.device(), DType::F32)).mask_fill(mask, -1.0e30f32)
}

/// Causal sliding-window attention in query blocks of `w`: block `[i, i + w)` can only see keys
/// `[i − w + 1, i + w)`, so its scores are `[.., g·w, ≤ 2w − 1]` and a pass costs `2·s·w`
/// scores instead of `s²` (at s = 2048, w = 512: half; at 8192, an eighth). Same result as
/// [`scaled_dot_product`] with the full mask, which already holds the window.
///
/// # Shapes
/// - q: `[b, h, s, d]`, k/v: `[b, kv, s, d]`, bias: `[b or 1, 1, s, s]` → `[b, h, s, d]`
pub fn windowed(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: &Tensor<4>,
    scale: f64,
    w: usize,
) -> Tensor<4> {
    let s = q.dims()[2];
    let blocks: Vec<Tensor<4>> = (0..s)
        .step_by(w)
        .map(|start| {
            let len = w.min(s - start);
            let first = start.saturating_sub(w - 1);
            let keys = start + len - first;
            let m = bias.clone().narrow(2, start, len).narrow(3, first, keys);
            scaled_dot_product(
                q.clone().narrow(2, start, len),
                k.clone().narrow(2, first, keys),
                v.clone().narrow(2, first, keys),
                m,
                scale,
            )
        })
        .collect();
    Tensor::cat(blocks, 2)
}

/// softmax(q·kᵀ · scale + bias)·v with grouped KV heads, softmax in f32 (scale 1.0: Gemma 4);
/// `bias` is [`mask_bias`] of the mask.
///
/// # Shapes
/// - q: `[b, h, s, d]`, k/v: `[b, kv, t, d]`, bias: `[b or 1, 1, s, t]` → `[b, h, s, d]`
pub fn scaled_dot_product(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Tensor<4>,
    scale: f64,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let [_, kv, t, _] = k.dims();
    let g = h / kv;
    let q = q.reshape([b, kv, g * s, d]); // rows ordered (group, position)
    let scores = matmul(q, k.swap_dims(2, 3)).reshape([b, kv * g, s, t]); // rows (kv, g, s)
    // The bias broadcasts over heads and groups. Scale, bias and softmax in f32: one kernel each
    // way on a GPU (gemma4-kernels), Burn's ops on the CPU.
    let probs = masked_softmax(scores, bias, scale).reshape([b, kv, g * s, t]);
    matmul(probs, v).reshape([b, h, s, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{MaskSpec, RowMasks, build_mask};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn windowed_blocks_equal_the_full_masked_attention() {
        let device = Device::flex();
        let (b, h, kv, s, d) = (2, 4, 2, 37, 8);
        for w in [1, 5, 16] {
            let spec = MaskSpec {
                offset: 0,
                queries: s,
                key_start: 0,
                keys: s,
                window: Some(w),
                causal: true,
            };
            let padding: Vec<Vec<bool>> = vec![vec![true; s], (0..s).map(|t| t < 30).collect()]; // row 2 right-padded
            let mask =
                build_mask(&spec, RowMasks { padding: Some(&padding), segments: None }, &device);
            let q = Tensor::<4>::random([b, h, s, d], Distribution::Normal(0.0, 1.0), &device);
            let k = Tensor::<4>::random([b, kv, s, d], Distribution::Normal(0.0, 1.0), &device);
            let v = Tensor::<4>::random([b, kv, s, d], Distribution::Normal(0.0, 1.0), &device);
            let bias = mask_bias(mask);
            let full = scaled_dot_product(q.clone(), k.clone(), v.clone(), bias.clone(), 0.7);
            let blocked = windowed(q, k, v, &bias, 0.7, w);
            // Padding queries (fully masked rows) are free to differ: nothing reads them.
            let real = |t: Tensor<4>| {
                Tensor::cat(
                    vec![
                        t.clone().narrow(0, 0, 1),
                        t.narrow(0, 1, 1).narrow(2, 0, 30).pad((0, 0, 0, s - 30), 0.0),
                    ],
                    0,
                )
            };
            let err = (real(full) - real(blocked)).abs().max().into_scalar::<f32>();
            assert!(err < 1e-5, "window {w}: max difference {err}");
        }
    }
}
