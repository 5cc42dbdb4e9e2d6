//! Recipes: strict TOML (every table `deny_unknown_fields`), `--set table.key=value` overrides
//! applied to the same TOML tree before deserialising (so a misspelt override fails the same
//! way), paths resolved relative to the recipe file, and the resolved recipe saved beside the
//! outputs as `recipe.resolved.toml`.

use std::path::{Path, PathBuf};

use gemma4_data::DataConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// A whole recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub model: ModelSection,
    #[serde(default)]
    pub lora: LoraSection,
    pub data: DataConfig,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub schedule: ScheduleSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
}

/// `[model]`: a checkpoint directory, or the tiny built-in model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// HF checkpoint dir (config.json, weights, tokenizer.json, chat template).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `"tiny"`: a small random-weight Gemma 4 (PLE, KV sharing, sliding + full attention) with a
    /// small tokenizer, created in `<out_dir>/base_model` from `seed`.
    #[serde(default)]
    pub builtin: Option<String>,
    /// Weight/activation dtype: `f32`, `f16` or `bf16` (norms, softmax, loss stay f32). Default f32.
    #[serde(default = "default_dtype")]
    pub dtype: String,
}

/// `[lora]`: PEFT's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    /// Rank (higher = more capacity and memory). Default 8.
    pub r: usize,
    /// scale = lora_alpha / r (rsLoRA: / √r). Default 16.
    pub lora_alpha: f64,
    /// Dropout on the adapter input while training. Default 0.
    pub lora_dropout: f64,
    /// Module names (suffix match) or one regex over the full HF module path.
    pub target_modules: gemma4_lora::TargetModules,
    /// MoE expert parameters: `["experts.gate_up_proj", "experts.down_proj"]`.
    pub target_parameters: Vec<String>,
    /// Only these layers (default: all).
    pub layers_to_transform: Option<Vec<usize>>,
    pub use_rslora: bool,
}

/// `[optim]`: AdamW on the adapter only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// HF/PyTorch default 1e-8 (Burn's own default is 1e-5).
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = off). Default 1.0.
    pub max_grad_norm: f64,
}

/// `[schedule]`: learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// `constant`, `cosine` or `linear` (decay after warmup).
    pub kind: String,
    pub warmup_steps: usize,
    /// Decay floor as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

/// `[train]`: the loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Optimizer steps.
    pub iters: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (the loss is normalised by the step's target tokens).
    pub grad_accum: usize,
    /// Seed for adapter init, dropout and data order.
    pub seed: u64,
    /// Print a report line every N steps.
    pub report_every: usize,
    /// Output directory (relative to the recipe file).
    pub out_dir: PathBuf,
    /// On a non-finite loss or gradient: `false` (default) stops the run naming the step, the
    /// last checkpoint intact; `true` skips that step's update and counts it.
    pub skip_nonfinite: bool,
    /// Recompute each decoder layer in the backward pass instead of keeping its activations
    /// (peak memory of one layer, one more forward pass of compute). Same gradients.
    pub gradient_checkpointing: bool,
}

/// `[eval]`: validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Validate every N steps (0 = only at the end).
    pub every: usize,
    /// Batches per validation (0 = the whole split).
    pub batches: usize,
    /// Stop after this many validations without improvement (0 = never).
    pub early_stopping_patience: usize,
}

/// `[checkpoint]`: snapshots for `--resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Save every N steps (0 = only at the end).
    pub every: usize,
    /// Keep the last K snapshots.
    pub keep_last: usize,
}

fn default_dtype() -> String {
    "f32".into()
}

impl Default for LoraSection {
    fn default() -> Self {
        let names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
        Self {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: gemma4_lora::TargetModules::List(names.iter().map(|s| s.to_string()).collect()),
            target_parameters: Vec::new(),
            layers_to_transform: None,
            use_rslora: false,
        }
    }
}
impl Default for OptimSection {
    fn default() -> Self {
        Self { lr: 2e-4, weight_decay: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8, max_grad_norm: 1.0 }
    }
}
impl Default for ScheduleSection {
    fn default() -> Self {
        Self { kind: "cosine".into(), warmup_steps: 0, min_lr_ratio: 0.0 }
    }
}
impl Default for TrainSection {
    fn default() -> Self {
        Self { iters: 1000, batch_size: 4, grad_accum: 1, seed: 0, report_every: 10, out_dir: PathBuf::from("runs/default"), skip_nonfinite: false, gradient_checkpointing: false }
    }
}
impl Default for EvalSection {
    fn default() -> Self {
        Self { every: 100, batches: 0, early_stopping_patience: 0 }
    }
}
impl Default for CheckpointSection {
    fn default() -> Self {
        Self { every: 100, keep_last: 3 }
    }
}

impl Recipe {
    /// Read a recipe, apply `key=value` overrides (`table.key=value`, TOML values; bare words
    /// are strings), validate, and resolve relative paths against the recipe's directory.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.to_owned(), source })?;
        let mut tree: toml::Table = toml::from_str(&text).map_err(|e| TrainError::Recipe { path: path.to_owned(), reason: e.to_string() })?;
        for o in overrides {
            apply_override(&mut tree, o).map_err(|reason| TrainError::Recipe { path: path.to_owned(), reason: format!("--set {o}: {reason}") })?;
        }
        let mut recipe: Recipe = toml::Value::Table(tree).try_into().map_err(|e: toml::de::Error| {
            // A wrong value in the file itself: parse the text again for toml's line and snippet.
            let reason = toml::from_str::<Recipe>(&text).err().unwrap_or(e).to_string();
            TrainError::Recipe { path: path.to_owned(), reason }
        })?;
        recipe.validate().map_err(|reason| TrainError::Recipe { path: path.to_owned(), reason })?;
        let base = path.parent().unwrap_or(Path::new("."));
        recipe.resolve_paths(base);
        Ok(recipe)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.model.path.as_mut() {
            fix(p);
        }
        fix(&mut self.data.train);
        self.data.valid.as_mut().map(fix);
        self.data.test.as_mut().map(fix);
        fix(&mut self.train.out_dir);
    }

    fn validate(&self) -> std::result::Result<(), String> {
        match (&self.model.path, &self.model.builtin) {
            (None, None) => return Err("[model]: set `path` (a checkpoint directory) or `builtin = \"tiny\"`".into()),
            (Some(_), Some(_)) => return Err("[model]: set either `path` or `builtin`, not both".into()),
            (None, Some(b)) if b != "tiny" => return Err(format!("[model] builtin = {b:?}: unknown (available: \"tiny\")")),
            _ => {}
        }
        if !matches!(self.model.dtype.as_str(), "f32" | "f16" | "bf16") {
            return Err(format!("[model] dtype = {:?}: expected \"f32\", \"f16\" or \"bf16\"", self.model.dtype));
        }
        if !matches!(self.schedule.kind.as_str(), "constant" | "cosine" | "linear") {
            return Err(format!("[schedule] kind = {:?}: expected \"constant\", \"cosine\" or \"linear\"", self.schedule.kind));
        }
        let positive = [("[train] iters", self.train.iters), ("[train] batch_size", self.train.batch_size), ("[train] grad_accum", self.train.grad_accum), ("[lora] r", self.lora.r), ("[data] max_seq_len", self.data.max_seq_len)];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("{k} must be > 0"));
            }
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return Err("[optim] lr must be > 0".into());
        }
        // NaN/inf (valid TOML) would only surface later as a non-finite loss blamed on the data.
        let (o, s) = (&self.optim, &self.schedule);
        let floats = [("[optim] lr", o.lr), ("[optim] weight_decay", o.weight_decay), ("[optim] eps", o.eps), ("[optim] max_grad_norm", o.max_grad_norm), ("[schedule] min_lr_ratio", s.min_lr_ratio)];
        for (k, v) in floats {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{k} = {v}: must be a finite number >= 0"));
            }
        }
        if !self.lora.lora_alpha.is_finite() {
            return Err(format!("[lora] lora_alpha = {}: must be finite", self.lora.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.optim.beta1) || !(0.0..1.0).contains(&self.optim.beta2) {
            return Err("[optim] beta1/beta2 must be in [0, 1)".into());
        }
        // The adapter config's own checks (dropout range, targets, ...), before anything is written.
        self.lora_config("").validate().map_err(|e| format!("[lora] {e}"))?;
        Ok(())
    }

    /// The PEFT config this recipe's `[lora]` table describes.
    pub fn lora_config(&self, base_model: &str) -> gemma4_lora::LoraConfig {
        let l = &self.lora;
        let mut c = gemma4_lora::LoraConfig::new(l.r, l.lora_alpha, l.target_modules.clone());
        c.lora_dropout = l.lora_dropout;
        c.use_rslora = l.use_rslora;
        c.target_parameters = (!l.target_parameters.is_empty()).then(|| l.target_parameters.clone());
        c.layers_to_transform = l.layers_to_transform.clone().map(gemma4_lora::config::LayerSelection::Many);
        c.base_model_name_or_path = Some(base_model.to_owned());
        c
    }

    /// The recipe as TOML (saved as `recipe.resolved.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// `table.key=value` (also `table.sub.key`); the value is parsed as TOML, else taken as a string.
fn apply_override(tree: &mut toml::Table, spec: &str) -> std::result::Result<(), String> {
    let (key, raw) = spec.split_once('=').ok_or("expected table.key=value")?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err("expected table.key=value".into());
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|t| t.get("v").cloned())
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned()));
    let mut node = tree;
    for p in &parts[..parts.len() - 1] {
        node = node
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    node.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("r.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = "[model]\nbuiltin = \"tiny\"\n[data]\ntrain = \"d/train.jsonl\"\n";

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &format!("{MINIMAL}[optim]\nlearning_rate = 1e-4\n"));
        let e = Recipe::load(&p, &[]).unwrap_err().to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let p = write(dir.path(), MINIMAL);
        let e = Recipe::load(&p, &["train.iterz=5".into()]).unwrap_err().to_string();
        assert!(e.contains("iterz"), "{e}");
    }

    #[test]
    fn overrides_go_through_the_same_parser_and_paths_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), MINIMAL);
        let r = Recipe::load(&p, &["optim.lr=3e-4".into(), "schedule.kind=linear".into(), "train.iters=7".into()]).unwrap();
        assert_eq!((r.optim.lr, r.schedule.kind.as_str(), r.train.iters), (3e-4, "linear", 7));
        assert_eq!(r.data.train, dir.path().join("d/train.jsonl"));
        let e = Recipe::load(&p, &["optim.lr=\"fast\"".into()]).unwrap_err().to_string();
        assert!(e.contains("lr"), "{e}");
        let back: Recipe = toml::from_str(&r.to_toml()).unwrap();
        assert_eq!(back, r);
    }
}
