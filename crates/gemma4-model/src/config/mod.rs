//! `config.json` in, a validated and resolved [`Gemma4TextConfig`] out.
//!
//! Two layers, as in ripgrep's low/high split: `hf.rs` mirrors the JSON that transformers
//! writes (text-only `gemma4_text` at top level, multimodal `gemma4` under `text_config`);
//! `resolve.rs` (through [`Gemma4TextConfig::from_json`]) applies HF's defaults and
//! post-processing (`configuration_gemma4.py`, transformers 5.24) and derives the per-layer
//! structure: layer types, head dims, KV heads, KV donors, MLP widths (`formats/gemma3.rs` does
//! the same for Gemma 3 configs), with `rope.rs` resolving `rope_parameters` for both. The model
//! only ever sees the resolved type.
//!
//! Missing keys take HF's defaults (never mlx-lm's). Values we do not implement are an error
//! naming the key; keys we do not know are returned as warnings for the caller to print.
//! `limits.rs` bounds every size before it is used, and names the key of a mistyped value.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// Attention kind of one decoder layer (`layer_types` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerType {
    Sliding,
    Full,
}

impl LayerType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "sliding_attention" => Some(Self::Sliding),
            "full_attention" => Some(Self::Full),
            _ => None,
        }
    }
    /// The HF spelling (`sliding_attention` / `full_attention`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Sliding => "sliding_attention",
            Self::Full => "full_attention",
        }
    }
}

/// RoPE of one layer type, from `rope_parameters[layer_type]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    /// `default` (all pairs rotate) or `proportional` (only `partial_rotary_factor` of them).
    pub rope_type: String,
    pub rope_theta: f64,
    /// Fraction of the head dim that rotates (`proportional` only; HF default 1.0).
    pub partial_rotary_factor: f64,
    /// Divides every inverse frequency (`proportional` only; HF default 1.0).
    pub factor: f64,
}

/// The resolved structure of one decoder layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub layer_type: LayerType,
    /// `head_dim` on sliding layers, `global_head_dim` (or the `per_layer_config` override) on full ones.
    pub head_dim: usize,
    pub num_key_value_heads: usize,
    /// Full layers with `attention_k_eq_v`: no `v_proj`, V comes from the K projection.
    pub k_eq_v: bool,
    /// Layers `>= num_hidden_layers - num_kv_shared_layers` own no K/V and read their donor's.
    pub kv_donor: Option<usize>,
    /// `2 * intermediate_size` on KV-shared layers when `use_double_wide_mlp`.
    pub intermediate_size: usize,
}

/// The validated text-decoder configuration the model is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma4TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    /// As written in config.json.
    pub sliding_window: usize,
    /// The longest sequence the model was trained for (`None`: not stated); longer input is
    /// allowed, with a warning from the callers that see it.
    pub max_position_embeddings: Option<usize>,
    /// `use_bidirectional_attention: "all"`: no causal mask; sliding layers see `|q − k| ≤ W/2 + 1`.
    pub bidirectional: bool,
    pub final_logit_softcapping: Option<f64>,
    pub vocab_size_per_layer_input: usize,
    /// PLE width D; 0 = no per-layer embeddings.
    pub hidden_size_per_layer_input: usize,
    pub attention_k_eq_v: bool,
    pub num_kv_shared_layers: usize,
    pub use_double_wide_mlp: bool,
    pub enable_moe_block: bool,
    pub num_experts: usize,
    pub top_k_experts: usize,
    pub moe_intermediate_size: usize,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub rope_parameters: BTreeMap<LayerType, RopeConfig>,
    pub layers: Vec<LayerSpec>,
    /// True when the checkpoint is a multimodal `gemma4` one (weights under `model.language_model.`).
    pub multimodal: bool,
    /// Added to every stored RMSNorm weight: 0 for Gemma 4 (`x̂·w`), 1 for Gemma 3 (`x̂·(1 + w)`).
    pub norm_weight_offset: f64,
    /// Multiplies `q·kᵀ`: 1.0 for Gemma 4 (the q/k norms absorb it), `query_pre_attn_scalar^-½` for Gemma 3.
    pub attention_scale: f64,
    /// V gets a scale-free RMSNorm (Gemma 4); Gemma 3 has none.
    pub v_norm: bool,
    /// Every layer stores a `layer_scalar` (Gemma 4); Gemma 3 has none (= 1).
    pub layer_scalar: bool,
}

/// A loaded config plus the keys we did not recognise (for the caller to warn about).
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: Gemma4TextConfig,
    pub warnings: Vec<String>,
}

impl Gemma4TextConfig {
    /// Read `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<LoadedConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|source| ModelError::Json { path: path.to_owned(), source })?;
        Self::from_json(&json).map_err(|e| e.in_file(path))
    }

    /// Resolve a parsed `config.json` (text-only or multimodal).
    pub fn from_json(json: &Value) -> Result<LoadedConfig> {
        let obj =
            json.as_object().ok_or_else(|| ModelError::invalid("<root>", "not a JSON object"))?;
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("");
        let (text, multimodal, prefix) = match model_type {
            "gemma4_text" | "gemma3_text" => (json.clone(), false, ""),
            "gemma4" | "gemma4_unified" | "gemma3" => {
                let text = obj.get("text_config").cloned().ok_or_else(|| {
                    ModelError::invalid(
                        "text_config",
                        "multimodal `gemma4` config without `text_config`",
                    )
                })?;
                (text, true, "text_config.")
            }
            other => {
                return Err(ModelError::Unsupported {
                    key: "model_type".into(),
                    value: format!("{other:?}"),
                    hint: Some(
                        "expected `gemma4_text`, `gemma4`, `gemma3_text` or `gemma3`".into(),
                    ),
                });
            }
        };
        let mut hf: HfTextConfig = serde_json::from_value(text.clone())
            .map_err(|e| limits::name_bad_key(&text, prefix, &e))?;
        limits::check_limits(&hf, prefix)?;
        if multimodal {
            // Gemma4ForConditionalGeneration ties `lm_head` by the TOP-LEVEL key (default true).
            hf.tie_word_embeddings =
                Some(obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true));
        }
        let mut warnings: Vec<String> = hf
            .unknown
            .keys()
            .filter(|k| !IGNORED_KEYS.contains(&k.as_str()))
            .map(|k| format!("ignoring unknown config key `{prefix}{k}`"))
            .collect();
        warnings.sort();
        let config = if model_type.starts_with("gemma3") {
            resolve_gemma3(hf, multimodal)?
        } else {
            resolve(hf, multimodal)?
        };
        Ok(LoadedConfig { config, warnings })
    }

    /// Layers that own K/V projections (`< num_hidden_layers - num_kv_shared_layers`).
    pub fn first_kv_shared_layer(&self) -> usize {
        self.num_hidden_layers - self.num_kv_shared_layers
    }

    /// The window the sliding mask uses: `sliding_window`, or HF's `W/2 + 1` (inclusive
    /// distance) under bidirectional attention (`Gemma4TextConfig.__post_init__`).
    pub fn effective_sliding_window(&self) -> usize {
        if self.bidirectional { self.sliding_window / 2 + 1 } else { self.sliding_window }
    }
}

mod hf;
pub mod limits;
mod resolve;
mod rope;
pub(crate) use hf::HfTextConfig;
use hf::IGNORED_KEYS;
use resolve::resolve;
pub(crate) use resolve::{derive_layers, parse_eos, resolve_layer_types, validate};
pub(crate) use rope::resolve_rope;

use crate::formats::gemma3::resolve_gemma3;

#[cfg(test)]
mod tests;
