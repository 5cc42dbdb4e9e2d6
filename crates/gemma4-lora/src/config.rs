//! `adapter_config.json`, a strict mirror of PEFT's `LoraConfig` (mistral.rs style).
//!
//! Reading accepts every field PEFT writes (newer PEFT versions add fields; unknown ones are
//! kept and ignored) but rejects, by name, every value that would change the math in a way we
//! do not implement (DoRA, biases, rank/alpha patterns, modules_to_save, fan_in_fan_out, ...).
//! Writing emits the fields PEFT itself writes, so transformers/PEFT, vLLM and mistral.rs load it.
//!
//! The same type is a training recipe's `[lora]` table, read with
//! [`LoraConfig::deserialize_strict`] (unknown keys are errors there): one set of names, one
//! default per field, one [`LoraConfig::validate`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{LoraError, Result};

/// `target_modules`: a list of module-name suffixes, or one regex matched against the full name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Regex(String),
}

/// The fields of PEFT's `LoraConfig` that we read and write — also a recipe's `[lora]` table.
///
/// Each field has one default, used when its key is absent, both in `adapter_config.json` and in
/// a recipe (PEFT writes every key, so in practice the defaults decide recipes). They are PEFT's
/// except where a recipe's default differs: `lora_alpha` (16, PEFT 8) and `target_modules` (the
/// seven projections; PEFT's is a per-architecture table we do not have).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Always `"LORA"` (the only PEFT method we implement).
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    /// PEFT's task; default `"CAUSAL_LM"`.
    #[serde(default = "default_task_type")]
    pub task_type: Option<String>,
    /// Rank (higher = more capacity and memory). Default 8 (PEFT's).
    #[serde(default = "default_r")]
    pub r: usize,
    /// Scale numerator: scale = lora_alpha / r (or / √r with `use_rslora`). Default 16 (the
    /// recipe default; PEFT's is 8).
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Dropout on the adapter input while training, in [0, 1). Default 0.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names (suffix match) or one regex over the full HF module path. Default: the
    /// attention and MLP projections (`q/k/v/o_proj`, `gate/up/down_proj`).
    #[serde(default = "default_target_modules")]
    pub target_modules: Option<TargetModules>,
    /// 3-D parameters adapted directly (MoE experts: `experts.gate_up_proj`, `experts.down_proj`).
    #[serde(default)]
    pub target_parameters: Option<Vec<String>>,
    /// Scale by `lora_alpha / √r` (rsLoRA). Default false.
    #[serde(default)]
    pub use_rslora: bool,
    /// Only these layers (default: all).
    #[serde(default)]
    pub layers_to_transform: Option<LayerSelection>,
    /// The name of the layer list (`"layers"` is the only one supported).
    #[serde(default)]
    pub layers_pattern: Option<Value>,
    /// The base model the adapter was trained on (written on save).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Bias training: only `"none"` is supported.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// DoRA (not supported).
    #[serde(default)]
    pub use_dora: bool,
    /// Transposed base weights (not supported).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Per-module ranks (not supported: must be empty).
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, Value>,
    /// Per-module alphas (not supported: must be empty).
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, Value>,
    /// Full-weight modules saved with the adapter (not supported: must be empty).
    #[serde(default)]
    pub modules_to_save: Option<Value>,
    /// Modules excluded from targeting (kept on round trips).
    #[serde(default)]
    pub exclude_modules: Option<Value>,
    /// PEFT's inference flag; default true, as PEFT writes saved adapters.
    #[serde(default = "default_true")]
    pub inference_mode: bool,
    /// PEFT's init switch; default true (A Kaiming-uniform, B zero: what we do).
    #[serde(default = "default_init")]
    pub init_lora_weights: Value,
    /// Everything else PEFT writes (kept on round trips, checked where it matters). Always
    /// empty when read with [`LoraConfig::deserialize_strict`].
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `layers_to_transform`: one index or a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    One(usize),
    Many(Vec<usize>),
}

impl LayerSelection {
    /// Whether layer `layer` is selected.
    pub fn contains(&self, layer: usize) -> bool {
        match self {
            Self::One(i) => *i == layer,
            Self::Many(v) => v.contains(&layer),
        }
    }
}

/// A setting of a LoRA config that is refused, naming its key (PEFT's name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct InvalidLoraConfig {
    /// The key, e.g. `lora_dropout`.
    pub key: &'static str,
    /// Why it is refused.
    pub reason: String,
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_task_type() -> Option<String> {
    Some("CAUSAL_LM".into())
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_target_modules() -> Option<TargetModules> {
    let names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    Some(TargetModules::List(names.iter().map(|s| s.to_string()).collect()))
}
fn default_bias() -> String {
    "none".into()
}
fn default_true() -> bool {
    true
}
fn default_init() -> Value {
    Value::Bool(true)
}

impl Default for LoraConfig {
    /// Every field at its default (the same as deserialising `{}`).
    fn default() -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: default_task_type(),
            r: default_r(),
            lora_alpha: default_alpha(),
            lora_dropout: 0.0,
            target_modules: default_target_modules(),
            target_parameters: None,
            use_rslora: false,
            layers_to_transform: None,
            layers_pattern: None,
            base_model_name_or_path: None,
            bias: default_bias(),
            use_dora: false,
            fan_in_fan_out: false,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            modules_to_save: None,
            exclude_modules: None,
            inference_mode: default_true(),
            init_lora_weights: default_init(),
            other: BTreeMap::new(),
        }
    }
}

impl LoraConfig {
    /// The keys of the struct's own fields (PEFT's names), in order; anything else lands in
    /// [`LoraConfig::other`].
    pub const FIELDS: &'static [&'static str] = &[
        "peft_type",
        "task_type",
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "target_parameters",
        "use_rslora",
        "layers_to_transform",
        "layers_pattern",
        "base_model_name_or_path",
        "bias",
        "use_dora",
        "fan_in_fan_out",
        "rank_pattern",
        "alpha_pattern",
        "modules_to_save",
        "exclude_modules",
        "inference_mode",
        "init_lora_weights",
    ];

    /// A fresh config for training (defaults where not given).
    pub fn new(r: usize, lora_alpha: f64, target_modules: TargetModules) -> Self {
        Self { r, lora_alpha, target_modules: Some(target_modules), ..Self::default() }
    }

    /// Deserialise refusing any key outside [`LoraConfig::FIELDS`], as `deny_unknown_fields`
    /// would (a recipe's `[lora]`: a misspelt key is an error, not a PEFT extra kept aside).
    pub fn deserialize_strict<'de, D>(d: D) -> std::result::Result<Self, D::Error>
    where
        D: Deserializer<'de>,
    {
        let cfg = Self::deserialize(d)?;
        match cfg.other.keys().next() {
            Some(key) => Err(serde::de::Error::unknown_field(key, Self::FIELDS)),
            None => Ok(cfg),
        }
    }

    /// The one place the scale is computed: `alpha / r`, or `alpha / √r` under rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Read and validate `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LoraError::Io { path: path.to_owned(), source })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| LoraError::Config {
            path: path.to_owned(),
            reason: crate::error::name_bad_key::<Self>(&text, &e),
        })?;
        cfg.validate()
            .map_err(|e| LoraError::Config { path: path.to_owned(), reason: e.to_string() })?;
        Ok(cfg)
    }

    /// Reject every setting whose math we do not implement, naming the key. The one
    /// validation of a LoRA config: adapter files and recipes' `[lora]` tables both go through it.
    pub fn validate(&self) -> std::result::Result<(), InvalidLoraConfig> {
        let bad = |key: &'static str, why: &str| Err(InvalidLoraConfig { key, reason: why.into() });
        if self.peft_type != "LORA" {
            return bad("peft_type", &format!("{:?} is not supported (only LORA)", self.peft_type));
        }
        if self.r == 0 {
            return bad("r", "must be > 0");
        }
        if self.r > MAX_RANK {
            return bad("r", &format!("{} is past the limit {MAX_RANK}", self.r));
        }
        // NaN/inf (valid TOML) would only surface later as a non-finite loss blamed on the data.
        if !self.lora_alpha.is_finite() {
            return bad("lora_alpha", &format!("must be finite, found {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("lora_dropout", "must be in [0, 1)");
        }
        if self.use_dora {
            return bad("use_dora", "DoRA is not supported");
        }
        if self.bias != "none" {
            return bad("bias", &format!("{:?} is not supported (only \"none\")", self.bias));
        }
        if self.fan_in_fan_out {
            return bad("fan_in_fan_out", "true is not supported");
        }
        if !self.rank_pattern.is_empty() {
            return bad("rank_pattern", "per-module ranks are not supported");
        }
        if !self.alpha_pattern.is_empty() {
            return bad("alpha_pattern", "per-module alphas are not supported");
        }
        if self
            .modules_to_save
            .as_ref()
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
        {
            return bad("modules_to_save", "full-weight modules in an adapter are not supported");
        }
        if self.layers_pattern.as_ref().is_some_and(|v| {
            !v.is_null()
                && v.as_str() != Some("layers")
                && v.as_array().is_none_or(|a| a.iter().any(|x| x.as_str() != Some("layers")))
        }) {
            return bad("layers_pattern", "only \"layers\" is supported");
        }
        for key in ["lora_bias", "use_qalora", "use_bdlora"] {
            if self.other.get(key).is_some_and(|v| v.as_bool() == Some(true)) {
                return bad(key, "true is not supported");
            }
        }
        if let Some(params) = &self.target_parameters {
            if let Some(p) = params.iter().find(|p| {
                !(p.ends_with("experts.gate_up_proj") || p.ends_with("experts.down_proj"))
            }) {
                return bad(
                    "target_parameters",
                    &format!("{p:?} is not supported (experts.gate_up_proj, experts.down_proj)"),
                );
            }
            if !params.is_empty() && self.lora_dropout > 0.0 {
                return bad("lora_dropout", "must be 0 with target_parameters (as in PEFT)");
            }
        }
        if self.layers_to_transform.is_some()
            && matches!(self.target_modules, Some(TargetModules::Regex(_)))
        {
            return bad(
                "layers_to_transform",
                "needs target_modules as a list, not a regex (as in PEFT)",
            );
        }
        if self.target_modules.is_none()
            && self.target_parameters.as_ref().is_none_or(|p| p.is_empty())
        {
            return bad("target_modules", "missing (and no target_parameters)");
        }
        Ok(())
    }

    /// Write `adapter_config.json` as PEFT does (pretty JSON, sorted keys).
    pub fn to_json(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        let sorted: BTreeMap<String, Value> =
            v.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        serde_json::to_string_pretty(&sorted).unwrap_or_default()
    }
}

/// The largest LoRA rank accepted (allocated per module; PEFT's are 4..=1024).
pub const MAX_RANK: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_absent_key_takes_its_one_default() {
        let cfg: LoraConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, LoraConfig::default());
        assert_eq!((cfg.r, cfg.lora_alpha, cfg.scale()), (8, 16.0, 2.0));
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn fields_lists_exactly_the_struct_keys() {
        let v = serde_json::to_value(LoraConfig::default()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut fields = LoraConfig::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn peft_extras_are_kept_but_strict_reading_names_the_unknown_key() {
        let text =
            r#"{"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "megatron_config": null}"#;
        let cfg: LoraConfig = serde_json::from_str(text).unwrap();
        assert!(cfg.other.contains_key("megatron_config"));
        let mut json = serde_json::Deserializer::from_str(text);
        let e = LoraConfig::deserialize_strict(&mut json).unwrap_err().to_string();
        assert!(e.contains("unknown field `megatron_config`") && e.contains("`lora_alpha`"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let mut cfg = LoraConfig { lora_alpha: f64::NAN, ..LoraConfig::default() };
        assert_eq!(cfg.validate().unwrap_err().key, "lora_alpha");
        cfg = LoraConfig { r: 0, ..LoraConfig::default() };
        assert_eq!(cfg.validate().unwrap_err().to_string(), "`r`: must be > 0");
        cfg = LoraConfig { lora_dropout: 1.0, ..LoraConfig::default() };
        assert_eq!(cfg.validate().unwrap_err().to_string(), "`lora_dropout`: must be in [0, 1)");
    }
}
