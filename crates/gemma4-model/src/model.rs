//! The Gemma 4 text decoder (`Gemma4TextModel`) and its causal-LM head.
//!
//! `forward_hidden` is the full-sequence, no-cache forward used for training, evaluation and the
//! `logits` command: embeddings · √H, PLE, the layer stack (KV-shared layers read the K/V of their
//! donor computed earlier in the same pass), final norm. `logits` applies the head (tied to
//! `embed_tokens` or a separate `lm_head`) and the final softcap `c·tanh(x/c)`, in f32.

use std::collections::BTreeMap;

use burn::tensor::{DType, Device, Int, Tensor, TensorData, activation::log_softmax};

use crate::config::{Gemma4TextConfig, LayerType};
use crate::error::{ModelError, Result};
use crate::layer::DecoderLayer;
use crate::linear::{ProjName, Site};
use crate::norm::RmsNorm;
use crate::ple::{Ple, PleRows};
use crate::rope::Rope;
use crate::vocab::{Embedding, Head};

/// A batch of token ids, row-major `[batch, seq]`, with optional right-padding validity.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub batch: usize,
    pub seq: usize,
    /// `[batch][seq]`, `false` = padding (HF `attention_mask == 0`). `None` = all real tokens.
    pub attention_mask: Option<Vec<Vec<bool>>>,
    /// Packing: `[batch][seq]` sample index per token; tokens attend only within their sample.
    pub segments: Option<Vec<Vec<u32>>>,
    /// Packing: `[batch][seq]` RoPE position per token (restarting per sample). `None` = 0..seq.
    pub positions: Option<Vec<Vec<u32>>>,
    /// These ids' PLE rows, uploaded ahead ([`Gemma4TextModel::upload_ple_rows`]); `None`: the
    /// forward pass uploads them.
    pub ple_rows: Option<PleRows>,
}

impl TokenBatch {
    /// A plain batch: every token real, positions 0..seq.
    pub fn new(ids: Vec<u32>, batch: usize, seq: usize) -> Self {
        let (attention_mask, segments, positions, ple_rows) = (None, None, None, None);
        Self { ids, batch, seq, attention_mask, segments, positions, ple_rows }
    }
}

/// What a forward pass returns.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// After the final norm. `[b, s, e]`
    pub hidden: Tensor<3>,
    /// Scaled input embeddings `h₀` (when captured). `[b, s, e]`
    pub embeddings: Option<Tensor<3>>,
    /// Combined PLE inputs (when captured and PLE is on). `[b, s, L, D]`
    pub per_layer_inputs: Option<Tensor<4>>,
    /// Output of every decoder layer (when captured). `L × [b, s, e]`
    pub layer_outputs: Vec<Tensor<3>>,
}

/// The text decoder with its head.
#[derive(Clone, Debug)]
pub struct Gemma4TextModel {
    pub config: Gemma4TextConfig,
    /// `[v, e]`, in device-sized pieces of rows.
    pub embed_tokens: Embedding,
    pub ple: Option<Ple>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `[e, v]`, contiguous: `lm_head.weight`ᵀ, or `embed_tokens`ᵀ when tied (in pieces).
    pub lm_head: Head,
    pub rope: BTreeMap<LayerType, Rope>,
    pub device: Device,
    /// Prefix of the text weights in the checkpoint: `model.` or `model.language_model.`.
    pub weight_prefix: &'static str,
    /// The piece limit the weights were loaded with ([`Gemma4TextModel::piece_bytes`]).
    pub(crate) piece_bytes: usize,
}

/// A projection an adapter can target.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    pub site: Site,
    /// HF module path, e.g. `model.language_model.layers.3.self_attn.q_proj` (PEFT matches on it).
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
}

impl Gemma4TextModel {
    /// Every linear projection an adapter may target, in layer order. KV-shared layers have
    /// no k/v projections and k_eq_v layers no v_proj, so they are simply absent here.
    pub fn projections(&self) -> Vec<Projection> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = &layer.self_attn;
            let mut push = |proj: ProjName, lin: &crate::linear::Linear| {
                let [inp, outp] = lin.weight.dims();
                out.push(Projection {
                    site: Site { layer: i, proj },
                    path: format!("{}layers.{i}.{}", self.weight_prefix, proj.hf_path()),
                    in_features: inp,
                    out_features: outp,
                });
            };
            push(ProjName::QProj, &attn.q_proj);
            if let Some(kv) = &attn.kv {
                push(ProjName::KProj, &kv.k_proj);
                if let Some(v) = &kv.v_proj {
                    push(ProjName::VProj, v);
                }
            }
            push(ProjName::OProj, &attn.o_proj);
            push(ProjName::GateProj, &layer.mlp.gate_proj);
            push(ProjName::UpProj, &layer.mlp.up_proj);
            push(ProjName::DownProj, &layer.mlp.down_proj);
        }
        out
    }

    /// The largest device buffer one weight piece was loaded into, in bytes (the load's
    /// [`LoadOptions::piece_bytes`](crate::LoadOptions)); computations that cut their own
    /// tensors (the chunked loss's logits) stay below it too.
    pub fn piece_bytes(&self) -> usize {
        self.piece_bytes
    }

    /// Dtype of the projection weights and activations.
    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    /// Head and final softcap, in f32.
    ///
    /// # Shapes
    /// - hidden: `[b, s, e]` → `[b, s, v]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let logits = self.lm_head.forward(hidden).cast(DType::F32);
        match self.config.final_logit_softcapping {
            Some(c) => logits.div_scalar(c).tanh().mul_scalar(c),
            None => logits,
        }
    }

    /// Column blocks the head's gradient comes in ([`Gemma4TextModel::head_input_grad`]):
    /// [`HEAD_GRAD_SPLIT`] when the head is the tied embedding held in one piece and the split
    /// divides the vocabulary, else 1.
    pub fn head_grad_split(&self) -> usize {
        let (v, one) = (self.config.vocab_size, self.embed_tokens.pieces.len() == 1);
        let tied = self.config.tie_word_embeddings && one;
        if tied && v % HEAD_GRAD_SPLIT == 0 { HEAD_GRAD_SPLIT } else { 1 }
    }

    /// The gradient with respect to the head's input, in f32, given the logits' gradient `draw`
    /// in the column blocks of [`Gemma4TextModel::head_grad_split`]: with blocks, one batched
    /// product with `embed_tokens` viewed `[split, V/split, e]` (contiguous), summed over the
    /// blocks; with one, `draw·Wᵀ` over the head's pieces.
    ///
    /// # Shapes
    /// - draw: `[split, n, V/split]` → `[n, e]`
    pub fn head_input_grad(&self, draw: Tensor<3>) -> Tensor<2> {
        let [split, n, cols] = draw.dims();
        let e = self.config.hidden_size;
        if split > 1 {
            let table = self.embed_tokens.pieces[0].clone().reshape([split, cols, e]);
            let dh = draw.cast(table.dtype()).matmul(table); // [split, n, e]
            return dh.cast(DType::F32).sum_dim(0).reshape([n, e]);
        }
        let draw = draw.reshape([n, cols]);
        let (mut start, mut dh) = (0, Tensor::<2>::zeros([n, e], (&draw.device(), DType::F32)));
        for w in &self.lm_head.pieces {
            let v = w.dims()[1]; // w: [e, v]
            let block = draw.clone().slice([0..n, start..start + v]).cast(w.dtype());
            dh = dh + block.matmul(w.clone().transpose()).cast(DType::F32);
            start += v;
        }
        dh
    }
}

/// Column blocks of the head's backward product (`∂/∂h = Σ_b draw_b·E_b`, each over `V/8` of
/// the vocabulary) in one batched matmul. The `[n, e]` output alone gives too few cubes: on an
/// H200 through Vulkan the 1,024-row chunk's `draw·E` took 12.5 ms against the forward's 8 ms
/// (docs/performance.md).
pub const HEAD_GRAD_SPLIT: usize = 8;

/// `√x` rounded to the weight dtype, as HF's `embed_scale.to(weight.dtype)`.
pub(crate) fn round_to(x: f64, dtype: DType) -> f32 {
    let r = x.sqrt() as f32;
    match dtype {
        DType::BF16 => half::bf16::from_f32(r).to_f32(),
        DType::F16 => half::f16::from_f32(r).to_f32(),
        _ => r,
    }
}

/// Mean next-token cross-entropy over all `b·(s−1)` positions whose target is a real token
/// (HF `ForCausalLMLoss` with `labels = input_ids`, padding labels ignored). f32.
///
/// # Shapes
/// - logits: `[b, s, v]` → `[1]`
pub fn causal_lm_loss(logits: Tensor<3>, batch: &TokenBatch) -> Result<Tensor<1>> {
    let [b, s, v] = logits.dims();
    if s < 2 {
        return Err(ModelError::Input("loss needs sequences of at least 2 tokens".into()));
    }
    let device = logits.device();
    let logp = log_softmax(logits.cast(DType::F32).narrow(1, 0, s - 1), 2); // [b, s-1, v]
    let mut targets = Vec::with_capacity(b * (s - 1));
    let mut weights = Vec::with_capacity(b * (s - 1));
    for r in 0..b {
        for t in 1..s {
            targets.push(batch.ids[r * s + t] as i64);
            let real = batch.attention_mask.as_ref().is_none_or(|m| m[r][t]);
            weights.push(if real { 1.0f32 } else { 0.0 });
        }
    }
    let count: f32 = weights.iter().sum();
    if count == 0.0 {
        return Err(ModelError::Input("loss: no target tokens".into()));
    }
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [b, s - 1, 1]), &device);
    let weights = Tensor::<3>::from_data(TensorData::new(weights, [b, s - 1, 1]), &device);
    debug_assert!(v > 0);
    let picked = logp.gather(2, targets) * weights; // [b, s-1, 1]
    Ok(picked.sum().neg().div_scalar(count).reshape([1]))
}
