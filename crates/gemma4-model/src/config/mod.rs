//! `config.json` in, a validated and resolved [`Gemma4TextConfig`] out.
//!
//! Two layers, as in ripgrep's low/high split: [`HfTextConfig`] mirrors the JSON that
//! transformers writes (text-only `gemma4_text` at top level, multimodal `gemma4` under
//! `text_config`); [`Gemma4TextConfig::from_hf`] applies HF's defaults and post-processing
//! (`configuration_gemma4.py`, transformers 5.24) and derives the per-layer structure: layer
//! types, head dims, KV heads, KV donors, MLP widths. The model only ever sees the resolved type.
//!
//! Missing keys take HF's defaults (never mlx-lm's). Values we do not implement are an error
//! naming the key; keys we do not know are returned as warnings for the caller to print.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
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
        Self::from_json(&json)
    }

    /// Resolve a parsed `config.json` (text-only or multimodal).
    pub fn from_json(json: &Value) -> Result<LoadedConfig> {
        let obj = json.as_object().ok_or_else(|| ModelError::invalid("<root>", "not a JSON object"))?;
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("");
        let (text, multimodal, prefix) = match model_type {
            "gemma4_text" | "gemma3_text" => (json.clone(), false, ""),
            "gemma4" | "gemma4_unified" | "gemma3" => {
                let text = obj.get("text_config").cloned().ok_or_else(|| {
                    ModelError::invalid("text_config", "multimodal `gemma4` config without `text_config`")
                })?;
                (text, true, "text_config.")
            }
            other => {
                return Err(ModelError::Unsupported {
                    key: "model_type".into(),
                    value: format!("{other:?}"),
                    hint: Some("expected `gemma4_text`, `gemma4`, `gemma3_text` or `gemma3`".into()),
                });
            }
        };
        let mut hf: HfTextConfig = serde_json::from_value(text)
            .map_err(|e| ModelError::invalid(format!("{prefix}<fields>"), e.to_string()))?;
        if multimodal {
            // Gemma4ForConditionalGeneration ties `lm_head` by the TOP-LEVEL key (default true).
            hf.tie_word_embeddings = Some(obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true));
        }
        let mut warnings: Vec<String> = hf
            .unknown
            .keys()
            .filter(|k| !IGNORED_KEYS.contains(&k.as_str()))
            .map(|k| format!("ignoring unknown config key `{prefix}{k}`"))
            .collect();
        warnings.sort();
        let config = if model_type.starts_with("gemma3") { resolve_gemma3(hf, multimodal)? } else { resolve(hf, multimodal)? };
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

/// Keys transformers writes that do not change the text decoder's math.
const IGNORED_KEYS: &[&str] = &[
    "architectures", "transformers_version", "torch_dtype", "dtype", "initializer_range",
    "use_cache", "max_position_embeddings", "attention_dropout", "model_type", "output_attentions",
    "output_hidden_states", "return_dict", "tie_word_embeddings", "is_encoder_decoder",
    "_name_or_path", "chunk_size_feed_forward", "problem_type", "id2label", "label2id",
    "task_specific_params", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "cross_attention_hidden_size", "add_cross_attention", "is_decoder", "pruned_heads",
    "finetuning_task", "rope_traditional", "_sliding_window_pattern",
    "partial_rotary_factor", "global_partial_rotary_factor", "tie_last_hidden_states",
];

/// `config.json` text fields, verbatim. `None` = key absent (HF default applies).
#[derive(Debug, Deserialize)]
struct HfTextConfig {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    global_head_dim: Option<usize>,
    num_global_key_value_heads: Option<usize>,
    per_layer_config: Option<BTreeMap<String, Value>>,
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    rms_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    eos_token_id: Option<Value>,
    bos_token_id: Option<u32>,
    tie_word_embeddings: Option<bool>,
    rope_parameters: Option<BTreeMap<String, Value>>,
    rope_scaling: Option<Value>,
    attention_bias: Option<bool>,
    sliding_window: Option<usize>,
    layer_types: Option<Vec<String>>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    /// Gemma 4: `null` / `"vision"` / `"all"`; Gemma 3: a bool.
    use_bidirectional_attention: Option<Value>,
    query_pre_attn_scalar: Option<f64>,
    /// Gemma 3 legacy RoPE keys (global / local base), folded into `rope_parameters`.
    rope_theta: Option<f64>,
    rope_local_base_freq: Option<f64>,
    sliding_window_pattern: Option<usize>,
    vocab_size_per_layer_input: Option<usize>,
    hidden_size_per_layer_input: Option<usize>,
    attention_k_eq_v: Option<bool>,
    num_kv_shared_layers: Option<usize>,
    enable_moe_block: Option<bool>,
    use_double_wide_mlp: Option<bool>,
    num_experts: Option<usize>,
    top_k_experts: Option<usize>,
    moe_intermediate_size: Option<usize>,
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// Apply HF defaults and post-processing, then derive the per-layer structure.
fn resolve(hf: HfTextConfig, multimodal: bool) -> Result<Gemma4TextConfig> {
    // Defaults: HF `Gemma4TextConfig` (configuration_gemma4.py, transformers 5.24).
    let num_hidden_layers = hf.num_hidden_layers.unwrap_or(30);
    let act = hf.hidden_activation.or(hf.hidden_act).unwrap_or_else(|| "gelu_pytorch_tanh".into());
    if act != "gelu_pytorch_tanh" {
        return Err(ModelError::unsupported("hidden_activation", format!("{act:?}")));
    }
    // "vision" only changes attention between image tokens (text-only input is causal);
    // "all" makes every layer non-causal (HF `is_causal = False`).
    let bidirectional = match &hf.use_bidirectional_attention {
        None | Some(Value::Null) => false,
        Some(Value::String(v)) if v == "vision" => false,
        Some(Value::String(v)) if v == "all" => true,
        Some(v) => return Err(ModelError::unsupported("use_bidirectional_attention", v)),
    };
    if let Some(v) = hf.attn_logit_softcapping {
        return Err(ModelError::unsupported("attn_logit_softcapping", v));
    }
    if hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ModelError::Unsupported {
            key: "rope_scaling".into(),
            value: "(set)".into(),
            hint: Some("Gemma 4 takes RoPE settings from `rope_parameters`".into()),
        });
    }
    let layer_types = resolve_layer_types(hf.layer_types, num_hidden_layers, true)?;
    let rope_parameters = resolve_rope(hf.rope_parameters, &layer_types, &["default", "proportional"])?;

    let mut cfg = Gemma4TextConfig {
        vocab_size: hf.vocab_size.unwrap_or(262_144),
        hidden_size: hf.hidden_size.unwrap_or(2304),
        intermediate_size: hf.intermediate_size.unwrap_or(9216),
        num_hidden_layers,
        num_attention_heads: hf.num_attention_heads.unwrap_or(8),
        num_key_value_heads: hf.num_key_value_heads.unwrap_or(4),
        head_dim: hf.head_dim.unwrap_or(256),
        rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        attention_bias: hf.attention_bias.unwrap_or(false),
        sliding_window: hf.sliding_window.unwrap_or(512),
        bidirectional,
        final_logit_softcapping: hf.final_logit_softcapping,
        vocab_size_per_layer_input: hf.vocab_size_per_layer_input.unwrap_or(262_144),
        hidden_size_per_layer_input: hf.hidden_size_per_layer_input.unwrap_or(256),
        attention_k_eq_v: hf.attention_k_eq_v.unwrap_or(false),
        num_kv_shared_layers: hf.num_kv_shared_layers.unwrap_or(0),
        use_double_wide_mlp: hf.use_double_wide_mlp.unwrap_or(false),
        enable_moe_block: hf.enable_moe_block.unwrap_or(false),
        num_experts: 0,
        top_k_experts: 0,
        moe_intermediate_size: 0,
        pad_token_id: hf.pad_token_id.or(Some(0)),
        bos_token_id: hf.bos_token_id.or(Some(2)),
        eos_token_ids: parse_eos(hf.eos_token_id)?,
        rope_parameters,
        layers: Vec::new(),
        multimodal,
        norm_weight_offset: 0.0,
        attention_scale: 1.0,
        v_norm: true,
        layer_scalar: true,
    };
    if cfg.enable_moe_block {
        let need = |v: Option<usize>, key: &str| {
            v.filter(|&x| x > 0)
                .ok_or_else(|| ModelError::invalid(key, "required (> 0) when enable_moe_block is true"))
        };
        cfg.num_experts = need(hf.num_experts, "num_experts")?;
        cfg.top_k_experts = need(hf.top_k_experts, "top_k_experts")?;
        cfg.moe_intermediate_size = need(hf.moe_intermediate_size, "moe_intermediate_size")?;
        if cfg.top_k_experts > cfg.num_experts {
            return Err(ModelError::invalid("top_k_experts", "larger than num_experts"));
        }
    }
    let overrides = resolve_overrides(
        hf.per_layer_config,
        hf.global_head_dim,
        hf.num_global_key_value_heads,
        &cfg,
        &layer_types,
    )?;
    cfg.layers = derive_layers(&cfg, &layer_types, &overrides)?;
    validate(&cfg)?;
    Ok(cfg)
}

fn parse_eos(v: Option<Value>) -> Result<Vec<u32>> {
    let bad = || ModelError::invalid("eos_token_id", "expected an integer or a list of integers");
    match v {
        None => Ok(vec![1]),
        Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(bad)? as u32]),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().map(|n| n as u32).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
}

/// HF: 5:1 sliding:full pattern when absent; the last layer is forced to full attention.
fn resolve_layer_types(types: Option<Vec<String>>, n: usize, force_last_full: bool) -> Result<Vec<LayerType>> {
    let mut out = match types {
        None => (0..n)
            .map(|i| if (i + 1) % 6 == 0 { LayerType::Full } else { LayerType::Sliding })
            .collect::<Vec<_>>(),
        Some(list) => {
            if list.len() != n {
                return Err(ModelError::invalid(
                    "layer_types",
                    format!("has {} entries but num_hidden_layers is {n}", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    LayerType::parse(s).ok_or_else(|| ModelError::unsupported(format!("layer_types[{i}]"), format!("{s:?}")))
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    if let (true, Some(last)) = (force_last_full, out.last_mut()) {
        *last = LayerType::Full; // HF Gemma4TextConfig.__post_init__ forces this (with a warning).
    }
    Ok(out)
}

fn resolve_rope(
    params: Option<BTreeMap<String, Value>>,
    layer_types: &[LayerType],
    rope_types: &[&str],
) -> Result<BTreeMap<LayerType, RopeConfig>> {
    let mut out = BTreeMap::new();
    let Some(params) = params else {
        // HF default_rope_params.
        out.insert(LayerType::Sliding, RopeConfig { rope_type: "default".into(), rope_theta: 10_000.0, partial_rotary_factor: 1.0, factor: 1.0 });
        out.insert(LayerType::Full, RopeConfig { rope_type: "proportional".into(), rope_theta: 1_000_000.0, partial_rotary_factor: 0.25, factor: 1.0 });
        return Ok(out);
    };
    for lt in [LayerType::Sliding, LayerType::Full] {
        let key = format!("rope_parameters.{}", lt.hf_name());
        let Some(v) = params.get(lt.hf_name()) else {
            if layer_types.contains(&lt) {
                return Err(ModelError::invalid(key, "missing, but layers of this type exist"));
            }
            continue;
        };
        let obj = v.as_object().ok_or_else(|| ModelError::invalid(&key, "expected an object"))?;
        // transformers 5.24 standardises a dict without `rope_type` to "default" (full-width RoPE,
        // `partial_rotary_factor` ignored) — see docs/reference-findings.md.
        let rope_type = match obj.get("rope_type") {
            None | Some(Value::Null) => "default",
            Some(v) => v.as_str().ok_or_else(|| ModelError::invalid(format!("{key}.rope_type"), "expected a string"))?,
        };
        if !rope_types.contains(&rope_type) {
            return Err(ModelError::unsupported(format!("{key}.rope_type"), format!("{rope_type:?}")));
        }
        let num = |name: &str, default: f64| -> Result<f64> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x.as_f64().ok_or_else(|| ModelError::invalid(format!("{key}.{name}"), "expected a number")),
            }
        };
        for k in obj.keys() {
            // `original_max_position_embeddings` does not enter either RoPE type's frequencies.
            if !matches!(k.as_str(), "rope_type" | "rope_theta" | "partial_rotary_factor" | "factor" | "original_max_position_embeddings") {
                return Err(ModelError::unsupported(format!("{key}.{k}"), &obj[k]));
            }
        }
        let mut cfg = RopeConfig {
            rope_type: rope_type.into(),
            rope_theta: num("rope_theta", 10_000.0)?,
            partial_rotary_factor: num("partial_rotary_factor", 1.0)?,
            factor: num("factor", 1.0)?,
        };
        // HF's `default` RoPE (`compute_default_rope_parameters`) ignores both.
        if rope_type == "default" {
            cfg.partial_rotary_factor = 1.0;
            cfg.factor = 1.0;
        }
        if rope_type == "linear" {
            cfg.partial_rotary_factor = 1.0; // Gemma 3 `linear`: full width, every frequency / factor
        }
        if !(cfg.factor > 0.0) || !(0.0..=1.0).contains(&cfg.partial_rotary_factor) || !(cfg.rope_theta > 0.0) {
            return Err(ModelError::invalid(key, "rope_theta/factor must be > 0, partial_rotary_factor in [0, 1]"));
        }
        out.insert(lt, cfg);
    }
    Ok(out)
}

/// Per-layer `(head_dim, num_key_value_heads)` overrides, from either spelling:
/// `per_layer_config` (newer transformers: `{"<layer>": {"head_dim": .., "num_key_value_heads": ..}}`)
/// or the older `global_head_dim` / `num_global_key_value_heads` keys (full layers only).
fn resolve_overrides(
    per_layer: Option<BTreeMap<String, Value>>,
    global_head_dim: Option<usize>,
    global_kv: Option<usize>,
    cfg: &Gemma4TextConfig,
    types: &[LayerType],
) -> Result<Vec<(Option<usize>, Option<usize>)>> {
    let n = types.len();
    let mut out = vec![(None, None); n];
    match per_layer {
        // HF ignores `global_head_dim` when `per_layer_config` is given.
        Some(map) => {
            for (key, v) in map {
                let targets: Vec<usize> = if let Ok(i) = key.parse::<usize>() {
                    if i >= n {
                        return Err(ModelError::invalid(format!("per_layer_config.{key}"), format!("layer index out of range (num_hidden_layers = {n})")));
                    }
                    vec![i]
                } else if let Some(lt) = LayerType::parse(&key) {
                    (0..n).filter(|&i| types[i] == lt).collect()
                } else {
                    return Err(ModelError::invalid(format!("per_layer_config.{key}"), "expected a layer index"));
                };
                let obj = v.as_object().ok_or_else(|| ModelError::invalid(format!("per_layer_config.{key}"), "expected an object"))?;
                let mut hd = None;
                let mut kv = None;
                for (field, val) in obj {
                    let parsed = || val.as_u64().map(|x| x as usize);
                    match field.as_str() {
                        "head_dim" => hd = parsed().or(Some(cfg.head_dim)),
                        "num_key_value_heads" => kv = parsed().or(Some(cfg.num_key_value_heads)),
                        _ => return Err(ModelError::unsupported(format!("per_layer_config.{key}.{field}"), val)),
                    }
                }
                for i in targets {
                    out[i] = (hd.or(out[i].0), kv.or(out[i].1));
                }
            }
        }
        None => {
            let hd = Some(global_head_dim.filter(|&d| d > 0).unwrap_or(if global_head_dim.is_some() { cfg.head_dim } else { 512 }));
            let kv = if cfg.attention_k_eq_v { global_kv } else { None };
            for i in 0..n {
                if types[i] == LayerType::Full {
                    out[i] = (hd, kv);
                }
            }
        }
    }
    Ok(out)
}

fn derive_layers(
    cfg: &Gemma4TextConfig,
    types: &[LayerType],
    overrides: &[(Option<usize>, Option<usize>)],
) -> Result<Vec<LayerSpec>> {
    let n = cfg.num_hidden_layers;
    if cfg.num_kv_shared_layers > n {
        return Err(ModelError::invalid("num_kv_shared_layers", format!("{} > num_hidden_layers {n}", cfg.num_kv_shared_layers)));
    }
    let first_shared = n - cfg.num_kv_shared_layers;
    let mut layers = Vec::with_capacity(n);
    for (i, &layer_type) in types.iter().enumerate() {
        let kv_donor = if i >= first_shared {
            // HF kv_sharing_modes: the last non-shared layer of the same type.
            let donor = (0..first_shared).rev().find(|&j| types[j] == layer_type);
            Some(donor.ok_or_else(|| {
                ModelError::invalid("num_kv_shared_layers", format!("layer {i} ({}) shares K/V but no earlier non-shared layer has that type", layer_type.hf_name()))
            })?)
        } else {
            None
        };
        let double = cfg.use_double_wide_mlp && kv_donor.is_some();
        layers.push(LayerSpec {
            layer_type,
            head_dim: overrides[i].0.unwrap_or(cfg.head_dim),
            num_key_value_heads: overrides[i].1.unwrap_or(cfg.num_key_value_heads),
            k_eq_v: cfg.attention_k_eq_v && layer_type == LayerType::Full,
            kv_donor,
            intermediate_size: cfg.intermediate_size * if double { 2 } else { 1 },
        });
    }
    Ok(layers)
}

fn validate(cfg: &Gemma4TextConfig) -> Result<()> {
    let positive = [
        ("vocab_size", cfg.vocab_size),
        ("hidden_size", cfg.hidden_size),
        ("intermediate_size", cfg.intermediate_size),
        ("num_hidden_layers", cfg.num_hidden_layers),
        ("num_attention_heads", cfg.num_attention_heads),
        ("sliding_window", cfg.sliding_window),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(ModelError::invalid(key, "must be > 0"));
        }
    }
    if cfg.hidden_size_per_layer_input > 0 && cfg.vocab_size_per_layer_input == 0 {
        return Err(ModelError::invalid("vocab_size_per_layer_input", "must be > 0 when hidden_size_per_layer_input > 0"));
    }
    for (i, l) in cfg.layers.iter().enumerate() {
        if l.head_dim == 0 || l.head_dim % 2 != 0 {
            return Err(ModelError::invalid(format!("head_dim (layer {i})"), format!("{} must be even and > 0", l.head_dim)));
        }
        if l.num_key_value_heads == 0 || cfg.num_attention_heads % l.num_key_value_heads != 0 {
            return Err(ModelError::invalid(
                format!("num_key_value_heads (layer {i})"),
                format!("{} must divide num_attention_heads {}", l.num_key_value_heads, cfg.num_attention_heads),
            ));
        }
    }
    if let Some(c) = cfg.final_logit_softcapping {
        if !(c > 0.0) {
            return Err(ModelError::invalid("final_logit_softcapping", "must be > 0 or null"));
        }
    }
    Ok(())
}

mod gemma3;
use gemma3::resolve_gemma3;

#[cfg(test)]
mod tests;
