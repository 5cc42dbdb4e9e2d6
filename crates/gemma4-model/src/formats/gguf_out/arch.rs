//! The plan of a GGUF export: llama.cpp architecture (`gemma3` or `gemma4`), its metadata keys
//! (`src/models/gemma3.cpp`, `gemma4.cpp` `load_arch_hparams`; `conversion/gemma.py`), and every
//! tensor with its llama.cpp name, type and value edit. What llama.cpp cannot represent is
//! refused here, before the caller writes anything.
//!
//! Edits: Gemma 3 norms are stored `1 + w` (llama.cpp multiplies by the stored weight); its
//! attention scale is fixed at `1/√key_length` (`1/√(n_embd/n_head)` on the 62-layer 27B), so a
//! different `query_pre_attn_scalar` is folded into `attn_q_norm` (RoPE is linear, the scores
//! scale with q). Gemma 4 stores norms as they are and gets a `rope_freqs` tensor: 1 for the
//! rotated pairs of its proportional RoPE, 1e30 (no rotation) for the rest.

use std::collections::BTreeMap;

use super::hparams::{full_head_dim, hparams};
use super::names::llama_name;
use super::{ExportQuant, GgufValue, Role, more_bits};
use crate::checkpoint::TensorInfo;
use crate::config::{Gemma4TextConfig, LayerType};
use crate::error::{ModelError, Result};
use crate::formats::quant::GgmlType;
use crate::weights::expected_tensors;

/// `stored = (w + add) · mul`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edit {
    pub add: f32,
    pub mul: f32,
}

impl Edit {
    const NONE: Self = Self { add: 0.0, mul: 1.0 };
    /// Apply in place.
    pub fn apply(self, values: &mut [f32]) {
        if self != Self::NONE {
            values.iter_mut().for_each(|v| *v = (*v + self.add) * self.mul);
        }
    }
}

/// One tensor of the export.
#[derive(Clone, Debug)]
pub struct ExportTensor {
    /// llama.cpp name.
    pub name: String,
    /// The checkpoint tensor it comes from (HF name); `None` for computed ones (`values`).
    pub source: Option<String>,
    /// HF (row-major) shape.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    pub edit: Edit,
    /// Values of a computed tensor (`rope_freqs.weight`).
    pub values: Option<Vec<f32>>,
}

/// Everything a GGUF export writes, decided before writing.
#[derive(Clone, Debug)]
pub struct GgufPlan {
    pub arch: &'static str,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<ExportTensor>,
    /// Matrices whose rows are not whole blocks of the quant type, written as F16 instead
    /// (as llama.cpp's own converter does).
    pub fallbacks: Vec<String>,
}

fn refuse(key: &str, value: impl ToString, why: &str) -> ModelError {
    ModelError::Unsupported {
        key: key.into(),
        value: value.to_string(),
        hint: Some(format!("llama.cpp cannot represent this: {why}")),
    }
}

/// The llama.cpp architecture of a config, or a refusal naming the feature it lacks.
pub fn architecture(cfg: &Gemma4TextConfig) -> Result<&'static str> {
    if cfg.attention_bias {
        return Err(refuse("attention_bias", true, "Gemma attention in llama.cpp has no biases"));
    }
    if cfg.bidirectional {
        return Err(refuse("use_bidirectional_attention", "all", "text decoders are causal"));
    }
    if cfg.enable_moe_block {
        return Err(refuse("enable_moe_block", true, "MoE export is not written yet (issue 18)"));
    }
    match (cfg.norm_weight_offset, cfg.v_norm) {
        (1.0, false) => Ok("gemma3"),
        (0.0, true) => {
            if cfg.attention_scale != 1.0 {
                return Err(refuse("attention_scale", cfg.attention_scale, "gemma4 scales by 1"));
            }
            if cfg.hidden_size_per_layer_input > 0
                && cfg.vocab_size_per_layer_input != cfg.vocab_size
            {
                return Err(refuse(
                    "vocab_size_per_layer_input",
                    cfg.vocab_size_per_layer_input,
                    "per_layer_token_embd must have vocab_size rows",
                ));
            }
            Ok("gemma4")
        }
        (o, v) => Err(refuse("norm_weight_offset", format!("{o} (v_norm {v})"), "not Gemma 3/4")),
    }
}

/// Plan the export of `cfg`'s text decoder from a checkpoint holding `tensors` (HF names), with
/// the weight matrices as `quant` and `vocab` as the tokenizer keys.
pub fn plan(
    cfg: &Gemma4TextConfig,
    tensors: &BTreeMap<String, TensorInfo>,
    quant: ExportQuant,
    name: &str,
    vocab: Vec<(String, GgufValue)>,
) -> Result<GgufPlan> {
    let arch = architecture(cfg)?;
    let mut metadata = vec![
        ("general.architecture".to_owned(), GgufValue::Str(arch.into())),
        ("general.type".to_owned(), GgufValue::Str("model".into())),
        ("general.name".to_owned(), GgufValue::Str(name.into())),
        ("general.file_type".to_owned(), GgufValue::U32(quant.file_type())),
        ("general.quantization_version".to_owned(), GgufValue::U32(2)),
    ];
    metadata.extend(hparams(cfg, arch)?);
    metadata.extend(vocab);
    let prefix = if tensors.contains_key("model.language_model.embed_tokens.weight") {
        "model.language_model."
    } else {
        "model."
    };
    let mut out = GgufPlan { arch, metadata, tensors: Vec::new(), fallbacks: Vec::new() };
    let mut named = Vec::new();
    for (hf, shape) in expected_tensors(cfg, prefix) {
        let short = hf.strip_prefix(prefix).unwrap_or(&hf);
        let llama = llama_name(short)
            .ok_or_else(|| refuse("tensor", &hf, "no llama.cpp tensor of this architecture"))?;
        if !tensors.contains_key(&hf) {
            return Err(ModelError::Tensor { name: hf, reason: "not in the checkpoint".into() });
        }
        named.push((hf, shape, llama));
    }
    let roles = roles(named.iter().map(|(_, _, l)| l.as_str()), cfg.num_hidden_layers);
    for ((hf, shape, llama), role) in named.into_iter().zip(roles) {
        let short = hf.strip_prefix(prefix).unwrap_or(&hf);
        let (ty, fell_back) = quant.tensor_type(&shape, role);
        if fell_back {
            out.fallbacks.push(llama.clone());
        }
        let edit = edit(cfg, arch, short);
        out.tensors.push(ExportTensor {
            name: llama,
            source: Some(hf),
            shape,
            ty,
            edit,
            values: None,
        });
    }
    if arch == "gemma4" {
        out.tensors.push(rope_freqs(cfg)?);
    }
    Ok(out)
}

/// Each tensor's [`Role`] by its llama.cpp name, as `llama_tensor_get_type` sees them in its
/// layer order: the head (`output.weight`, else the tied `token_embd.weight`), the `attn_v` of
/// the [`more_bits`] ordinals among the `attn_v` tensors, the `ffn_down` of those layers.
fn roles<'a>(names: impl Iterator<Item = &'a str> + Clone, layers: usize) -> Vec<Role> {
    let has_output = names.clone().any(|n| n == "output.weight");
    let n_v = names.clone().filter(|n| n.ends_with("attn_v.weight")).count();
    let layer = |n: &str| n.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok();
    let mut i_v = 0;
    names
        .map(|n| {
            if n == "output.weight" || (!has_output && n == "token_embd.weight") {
                Role::Head
            } else if n.ends_with("attn_v.weight") {
                i_v += 1;
                if more_bits(i_v - 1, n_v) { Role::MoreBits } else { Role::Plain }
            } else if n.ends_with("ffn_down.weight")
                && layer(n).is_some_and(|i| more_bits(i, layers))
            {
                Role::MoreBits
            } else {
                Role::Plain
            }
        })
        .collect()
}

fn edit(cfg: &Gemma4TextConfig, arch: &str, hf: &str) -> Edit {
    if arch != "gemma3" || !hf.ends_with("norm.weight") {
        return Edit::NONE;
    }
    if hf.ends_with("self_attn.q_norm.weight") {
        // llama.cpp's Gemma 3 scale, and ours: the ratio rides on q.
        let llama = if cfg.num_hidden_layers == 62 {
            (cfg.num_attention_heads as f64 / cfg.hidden_size as f64).sqrt()
        } else {
            1.0 / (cfg.head_dim as f64).sqrt()
        };
        return Edit { add: 1.0, mul: (cfg.attention_scale / llama) as f32 };
    }
    Edit { add: 1.0, mul: 1.0 }
}

/// Gemma 4's `rope_freqs.weight` (`[head_dim_full / 2]`, F32), read by the full layers only.
fn rope_freqs(cfg: &Gemma4TextConfig) -> Result<ExportTensor> {
    let rope = cfg.rope_parameters.get(&LayerType::Full);
    let partial = rope.map_or(1.0, |r| r.partial_rotary_factor);
    let half = full_head_dim(cfg) / 2;
    // HF `proportional`: the first `head_dim·p/2` frequencies rotate, the rest are zero.
    let rotated = (full_head_dim(cfg) as f64 * partial / 2.0) as usize;
    let values: Vec<f32> = (0..half).map(|i| if i < rotated { 1.0 } else { 1e30 }).collect();
    Ok(ExportTensor {
        name: "rope_freqs.weight".into(),
        source: None,
        shape: vec![half],
        ty: GgmlType::F32,
        edit: Edit::NONE,
        values: Some(values),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Gemma4TextConfig;

    fn fixture(name: &str) -> (Gemma4TextConfig, BTreeMap<String, TensorInfo>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let cfg = Gemma4TextConfig::from_file(&dir.join(name).join("config.json")).unwrap().config;
        let tensors = expected_tensors(&cfg, "model.")
            .into_iter()
            .map(|(n, shape)| {
                let info =
                    TensorInfo { dtype: safetensors::Dtype::F32, shape, file: 0, start: 0, end: 0 };
                (n, info)
            })
            .collect();
        (cfg, tensors)
    }

    fn key<'a>(p: &'a GgufPlan, k: &str) -> &'a GgufValue {
        &p.metadata.iter().find(|(n, _)| n == k).unwrap().1
    }

    #[test]
    fn gemma3_norms_add_one_and_q_norm_carries_the_attention_scale() {
        let (cfg, tensors) = fixture("gemma3_dense");
        let p = plan(&cfg, &tensors, ExportQuant::F16, "t", Vec::new()).unwrap();
        assert_eq!(p.arch, "gemma3");
        let edit = |n: &str| p.tensors.iter().find(|t| t.name == n).unwrap().edit;
        // query_pre_attn_scalar 24, head dim 16: llama.cpp scales by 16^-½, HF by 24^-½.
        let q = edit("blk.0.attn_q_norm.weight");
        assert_eq!(q.add, 1.0);
        assert!((q.mul - (16f32 / 24.0).sqrt()).abs() < 1e-6, "{q:?}");
        assert_eq!(edit("blk.0.attn_k_norm.weight"), Edit { add: 1.0, mul: 1.0 });
        assert_eq!(edit("output_norm.weight"), Edit { add: 1.0, mul: 1.0 });
        assert_eq!(edit("blk.0.attn_q.weight"), Edit::NONE);
        let pattern = GgufValue::ArrBool(vec![true, true, false, true, true]);
        assert_eq!(key(&p, "gemma3.attention.sliding_window_pattern"), &pattern);
        assert_eq!(key(&p, "gemma3.rope.freq_base_swa"), &GgufValue::F32(100.0));
        assert_eq!(key(&p, "gemma3.rope.scaling.factor"), &GgufValue::F32(8.0));
    }

    #[test]
    fn gemma4_full_layers_get_proportional_rope_freqs() {
        let (cfg, tensors) = fixture("dense");
        let p = plan(&cfg, &tensors, ExportQuant::Q8_0, "t", Vec::new()).unwrap();
        assert_eq!(p.arch, "gemma4");
        let rope = p.tensors.iter().find(|t| t.name == "rope_freqs.weight").unwrap();
        // Full head dim 32, partial_rotary_factor 0.25: 4 of 16 pairs rotate.
        let want: Vec<f32> = (0..16).map(|i| if i < 4 { 1.0 } else { 1e30 }).collect();
        assert_eq!(rope.values.as_deref(), Some(want.as_slice()));
        assert!(p.tensors.iter().all(|t| t.edit == Edit::NONE));
        assert_eq!(key(&p, "gemma4.attention.key_length"), &GgufValue::U32(32));
        assert_eq!(key(&p, "gemma4.attention.key_length_swa"), &GgufValue::U32(16));
        let norm = p.tensors.iter().find(|t| t.name == "blk.0.attn_norm.weight").unwrap();
        assert_eq!(norm.ty, GgmlType::F32);
        let q = p.tensors.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
        assert_eq!(q.ty, GgmlType::Q8_0);
    }
}
