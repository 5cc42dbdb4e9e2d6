//! `adapter_config.json`, a strict mirror of PEFT's `LoraConfig` (mistral.rs style).
//!
//! Reading accepts every field PEFT writes (newer PEFT versions add fields; unknown ones are
//! kept and ignored) but rejects, by name, every value that would change the math in a way we
//! do not implement (DoRA, biases, rank/alpha patterns, modules_to_save, fan_in_fan_out, ...).
//! Writing emits the fields PEFT itself writes, so transformers/PEFT, vLLM and mistral.rs load it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{LoraError, Result};

/// `target_modules`: a list of module-name suffixes, or one regex matched against the full name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Regex(String),
}

/// The fields of PEFT's `LoraConfig` that we read and write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    #[serde(default = "default_task_type")]
    pub task_type: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scale numerator: scale = lora_alpha / r (or / √r with `use_rslora`). PEFT default 8.
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: Option<TargetModules>,
    /// 3-D parameters adapted directly (MoE experts: `experts.gate_up_proj`, `experts.down_proj`).
    #[serde(default)]
    pub target_parameters: Option<Vec<String>>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub layers_to_transform: Option<LayerSelection>,
    #[serde(default)]
    pub layers_pattern: Option<Value>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, Value>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, Value>,
    #[serde(default)]
    pub modules_to_save: Option<Value>,
    #[serde(default)]
    pub exclude_modules: Option<Value>,
    #[serde(default = "default_true")]
    pub inference_mode: bool,
    #[serde(default = "default_init")]
    pub init_lora_weights: Value,
    /// Everything else PEFT writes (kept on round trips, checked where it matters).
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
    pub fn contains(&self, layer: usize) -> bool {
        match self {
            Self::One(i) => *i == layer,
            Self::Many(v) => v.contains(&layer),
        }
    }
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_task_type() -> Option<String> {
    Some("CAUSAL_LM".into())
}
fn default_alpha() -> f64 {
    8.0
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

impl LoraConfig {
    /// A fresh config for training (PEFT defaults where not given).
    pub fn new(r: usize, lora_alpha: f64, target_modules: TargetModules) -> Self {
        Self {
            peft_type: default_peft_type(),
            task_type: default_task_type(),
            r,
            lora_alpha,
            lora_dropout: 0.0,
            target_modules: Some(target_modules),
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
            inference_mode: true,
            init_lora_weights: default_init(),
            other: BTreeMap::new(),
        }
    }

    /// The one place the scale is computed: `alpha / r`, or `alpha / √r` under rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora { self.lora_alpha / (self.r as f64).sqrt() } else { self.lora_alpha / self.r as f64 }
    }

    /// Read and validate `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LoraError::Io { path: path.to_owned(), source })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| LoraError::Config { path: path.to_owned(), reason: e.to_string() })?;
        cfg.validate().map_err(|reason| LoraError::Config { path: path.to_owned(), reason })?;
        Ok(cfg)
    }

    /// Reject every setting whose math we do not implement, naming the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("`{key}`: {why}"));
        if self.peft_type != "LORA" {
            return bad("peft_type", &format!("{:?} is not supported (only LORA)", self.peft_type));
        }
        if self.r == 0 {
            return bad("r", "must be > 0");
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
        if self.modules_to_save.as_ref().is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            return bad("modules_to_save", "full-weight modules in an adapter are not supported");
        }
        if self.layers_pattern.as_ref().is_some_and(|v| !v.is_null() && v.as_str() != Some("layers") && v.as_array().is_none_or(|a| a.iter().any(|x| x.as_str() != Some("layers")))) {
            return bad("layers_pattern", "only \"layers\" is supported");
        }
        for key in ["lora_bias", "use_qalora", "use_bdlora"] {
            if self.other.get(key).is_some_and(|v| v.as_bool() == Some(true)) {
                return bad(key, "true is not supported");
            }
        }
        if let Some(params) = &self.target_parameters {
            if let Some(p) = params.iter().find(|p| !(p.ends_with("experts.gate_up_proj") || p.ends_with("experts.down_proj"))) {
                return bad("target_parameters", &format!("{p:?} is not supported (experts.gate_up_proj, experts.down_proj)"));
            }
            if !params.is_empty() && self.lora_dropout > 0.0 {
                return bad("lora_dropout", "must be 0 with target_parameters (as in PEFT)");
            }
        }
        if self.layers_to_transform.is_some() && matches!(self.target_modules, Some(TargetModules::Regex(_))) {
            return bad("layers_to_transform", "needs target_modules as a list, not a regex (as in PEFT)");
        }
        if self.target_modules.is_none() && self.target_parameters.as_ref().is_none_or(|p| p.is_empty()) {
            return bad("target_modules", "missing (and no target_parameters)");
        }
        Ok(())
    }

    /// Write `adapter_config.json` as PEFT does (pretty JSON, sorted keys).
    pub fn to_json(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        let sorted: BTreeMap<String, Value> = v.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        serde_json::to_string_pretty(&sorted).unwrap_or_default()
    }
}
