//! The Gemma 4 text decoder (`Gemma4TextModel`) and its causal-LM head.
//!
//! `forward_hidden` is the full-sequence, no-cache forward used for training, evaluation and the
//! `logits` command: embeddings · √H, PLE, the layer stack (KV-shared layers read the K/V of their
//! donor computed earlier in the same pass), final norm. `logits` applies the head (tied to
//! `embed_tokens` or a separate `lm_head`) and the final softcap `c·tanh(x/c)`, in f32.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, Device, Int, Tensor, TensorData, activation::log_softmax};

use crate::checkpoint::Checkpoint;
use crate::config::{Gemma4TextConfig, LayerType, LoadedConfig};
use crate::error::{ModelError, Result};
use crate::layer::DecoderLayer;
use crate::linear::{ProjName, Site};
use crate::norm::RmsNorm;
use crate::ple::Ple;
use crate::rope::Rope;
use crate::vocab::{Embedding, Head};
use crate::weights::{LoadReport, Weights};

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
}

impl TokenBatch {
    /// A plain batch: every token real, positions 0..seq.
    pub fn new(ids: Vec<u32>, batch: usize, seq: usize) -> Self {
        Self { ids, batch, seq, attention_mask: None, segments: None, positions: None }
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
    /// Load `config.json` and the checkpoint in `dir`; weights in `dtype` (norms stay f32).
    /// Returns the model, the load report and config warnings (unknown keys).
    ///
    /// `dir` may also be a `.gguf` file, or a directory holding one `.gguf` and no
    /// `config.json`: the config then comes from the GGUF metadata (Gemma 3 only).
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<(Self, LoadReport, Vec<String>)> {
        if (dir.is_file() || !dir.join("config.json").is_file())
            && let Some(path) = crate::gguf::find_gguf(dir)?
        {
            let (ckpt, json) = Checkpoint::open_gguf(&path)?;
            let loaded = Gemma4TextConfig::from_json(&json)?;
            let (model, report) = Self::load(loaded.config, &ckpt, device, dtype)?;
            return Ok((model, report, loaded.warnings));
        }
        let loaded = Gemma4TextConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let (model, report) = Self::load(loaded.config, &ckpt, device, dtype)?;
        Ok((model, report, loaded.warnings))
    }

    /// The resolved config of a model path (as [`Gemma4TextModel::from_dir`] accepts it: a
    /// directory with `config.json`, a `.gguf` file or a directory holding one), without weights.
    pub fn config_at(dir: &Path) -> Result<LoadedConfig> {
        if dir.is_file() && dir.extension().is_some_and(|e| e == "json") {
            return Gemma4TextConfig::from_file(dir);
        }
        if (dir.is_file() || !dir.join("config.json").is_file())
            && let Some(path) = crate::gguf::find_gguf(dir)?
        {
            let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
            let header = crate::gguf::parse(&bytes, &path)?;
            return Gemma4TextConfig::from_json(&crate::gguf::config_json(&header, &path)?);
        }
        Gemma4TextConfig::from_file(&dir.join("config.json"))
    }

    /// Build the model from an opened checkpoint; every tensor is used or explicitly dropped.
    pub fn load(config: Gemma4TextConfig, ckpt: &Checkpoint, device: &Device, dtype: DType) -> Result<(Self, LoadReport)> {
        if !device.supports_dtype(dtype) {
            return Err(ModelError::Input(format!("the device does not support dtype {dtype:?}")));
        }
        let mut w = Weights::new(ckpt, device, dtype)?;
        let (v, e) = (config.vocab_size, config.hidden_size);
        let embed_tokens = Embedding { pieces: w.get_pieces("embed_tokens.weight", None, [v, e], false)? };
        let ple = if config.hidden_size_per_layer_input > 0 { Some(Ple::load(&mut w, &config)?) } else { None };
        let layers = (0..config.num_hidden_layers).map(|i| DecoderLayer::load(&mut w, &config, i)).collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::with_offset(w.get_f32("norm.weight", None, [e])?, config.rms_norm_eps, config.norm_weight_offset);
        // The head as a contiguous `[e, v]`: `lm_head`, or for tied heads a transposed copy of
        // `embed_tokens` (memory for speed: a strided view is copied on every matmul).
        let head = if config.tie_word_embeddings { "embed_tokens.weight" } else { "lm_head.weight" };
        let lm_head = Head { pieces: w.get_pieces(head, None, [v, e], true)? };
        let weight_prefix = w.prefix;
        let report = w.finish(&config)?;
        let rope = config
            .rope_parameters
            .iter()
            .filter_map(|(lt, rc)| {
                let d = config.layers.iter().find(|l| l.layer_type == *lt)?.head_dim;
                Some((*lt, Rope::new(rc, d)))
            })
            .collect();
        let model = Self { config, embed_tokens, ple, layers, norm, lm_head, rope, device: device.clone(), weight_prefix };
        Ok((model, report))
    }

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

}

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
