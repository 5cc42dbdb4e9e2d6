//! Recipes: strict TOML (every table `deny_unknown_fields`), `--set table.key=value` overrides
//! applied to the same TOML tree before deserialising (so a misspelt override fails the same
//! way), paths resolved relative to the recipe file, and the resolved recipe saved beside the
//! outputs as `recipe.resolved.toml`.
//!
//! Two steps. The text is parsed verbatim into these types: enums where a key has a fixed set of
//! values (`[model] dtype`, `builtin`, `[schedule] kind`), `[lora]` as PEFT's own `LoraConfig`,
//! `[data]` as the data crate's `DataConfig`. Then `resolve` runs once: every bound is checked
//! exactly once, each error naming its `[table] key` (`[lora]` by `LoraConfig::validate`,
//! `[data]` by `DataConfig::validate`), and relative paths are joined to the recipe's directory.

use std::path::{Path, PathBuf};

use gemma4_data::DataConfig;
use gemma4_lora::LoraConfig;
use serde::{Deserialize, Serialize};

pub use self::choice::{DtypeChoice, Recompute};

use crate::error::{Result, TrainError};
use crate::schedule::ScheduleKind;

/// A whole recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub model: ModelSection,
    /// PEFT's `LoraConfig`, keys and defaults as in `adapter_config.json` (unknown keys refused).
    #[serde(default, deserialize_with = "LoraConfig::deserialize_strict")]
    pub lora: LoraConfig,
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
    pub builtin: Option<BuiltinModel>,
    /// Weight/activation dtype: `auto` (default: bf16 on CUDA, f16 on wgpu/Vulkan/Metal, f32 on
    /// the CPU), `f32`, `f16` or `bf16` (norms, softmax, loss stay f32).
    #[serde(default)]
    pub dtype: DtypeChoice,
}

/// `[model] builtin`: a model made on the spot instead of read from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinModel {
    /// The tiny random-weight Gemma 4 of `tiny.rs` (tests, the quickstart).
    Tiny,
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
    /// `constant`, `cosine` (default) or `linear` (decay after warmup).
    pub kind: ScheduleKind,
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
    /// (peak memory of one layer, one more forward pass of compute). Same gradients. A number
    /// `N`: only the first `N` layers, the rest kept. `"auto"` (default): the fewest layers
    /// the memory plan says fit, none when the run fits without.
    pub gradient_checkpointing: Recompute,
    /// Also write the metrics as TensorBoard event files in `<out_dir>/tensorboard/`
    /// (`tensorboard --logdir runs` compares runs). Default `false`.
    pub tensorboard: bool,
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

impl Default for OptimSection {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
        }
    }
}
impl Default for ScheduleSection {
    fn default() -> Self {
        Self { kind: ScheduleKind::Cosine, warmup_steps: 0, min_lr_ratio: 0.0 }
    }
}
impl Default for TrainSection {
    fn default() -> Self {
        Self {
            iters: 1000,
            batch_size: 4,
            grad_accum: 1,
            seed: 0,
            report_every: 10,
            out_dir: PathBuf::from("runs/default"),
            skip_nonfinite: false,
            gradient_checkpointing: Recompute::Auto,
            tensorboard: false,
        }
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
    /// are strings), parse it verbatim, then resolve it once: bounds checked, relative paths
    /// joined to the recipe's directory.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TrainError::Io { path: path.to_owned(), source })?;
        let mut tree: toml::Table = toml::from_str(&text)
            .map_err(|e| TrainError::Recipe { path: path.to_owned(), reason: e.to_string() })?;
        for o in overrides {
            apply_override(&mut tree, o).map_err(|reason| TrainError::Recipe {
                path: path.to_owned(),
                reason: format!("--set {o}: {reason}"),
            })?;
        }
        let recipe: Recipe =
            toml::Value::Table(tree).try_into().map_err(|e: toml::de::Error| {
                // A wrong value in the file itself: parse the text again for toml's line and snippet.
                let reason = toml::from_str::<Recipe>(&text).err().unwrap_or(e).to_string();
                TrainError::Recipe { path: path.to_owned(), reason }
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        recipe.resolve(base).map_err(|reason| TrainError::Recipe { path: path.to_owned(), reason })
    }

    /// The one resolution step of a verbatim recipe: check every bound, then join relative paths
    /// to `base` (the recipe's directory). The error is the reason, naming `[table] key`.
    fn resolve(mut self, base: &Path) -> std::result::Result<Self, String> {
        self.check_bounds()?;
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
        Ok(self)
    }

    /// Every bound of a recipe, each checked here once (dtype, kind and builtin are enums: serde
    /// already refused anything else, naming the key).
    fn check_bounds(&self) -> std::result::Result<(), String> {
        match (&self.model.path, &self.model.builtin) {
            (None, None) => {
                let how = "set `path` (a checkpoint directory) or `builtin = \"tiny\"`";
                return Err(format!("[model]: {how}"));
            }
            (Some(_), Some(_)) => {
                return Err("[model]: set either `path` or `builtin`, not both".into());
            }
            _ => {}
        }
        let t = &self.train;
        let counts = [
            ("[train] iters", t.iters),
            ("[train] batch_size", t.batch_size),
            ("[train] grad_accum", t.grad_accum),
        ];
        for (key, v) in counts {
            if v == 0 {
                return Err(format!("{key} must be > 0"));
            }
        }
        // Sizes that are allocated per step: bounded before any is (issue 16).
        for (key, v) in &counts[1..] {
            if *v > MAX_PER_STEP {
                return Err(format!("{key} = {v}: must be at most {MAX_PER_STEP}"));
            }
        }
        // NaN/inf (valid TOML) would only surface later as a non-finite loss blamed on the data.
        let (o, s) = (&self.optim, &self.schedule);
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(format!("[optim] lr must be > 0 and finite, found {}", o.lr));
        }
        let floats = [
            ("[optim] weight_decay", o.weight_decay),
            ("[optim] eps", o.eps),
            ("[optim] max_grad_norm", o.max_grad_norm),
            ("[schedule] min_lr_ratio", s.min_lr_ratio),
        ];
        for (k, v) in floats {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{k} = {v}: must be a finite number >= 0"));
            }
        }
        for (k, v) in [("[optim] beta1", o.beta1), ("[optim] beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{k} = {v}: must be in [0, 1)"));
            }
        }
        // `[lora]` and `[data]` are validated by their own crates, before anything is written.
        self.lora.validate().map_err(|e| format!("[lora] {e}"))?;
        self.data.validate().map_err(|e| e.to_string())
    }

    /// The PEFT config to train and save: `[lora]` as written, naming the base model.
    pub fn lora_config(&self, base_model: &str) -> LoraConfig {
        LoraConfig { base_model_name_or_path: Some(base_model.to_owned()), ..self.lora.clone() }
    }

    /// The recipe as TOML (saved as `recipe.resolved.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The most sequences a batch or micro-batches a step may hold (`batch_size`, `grad_accum`).
pub const MAX_PER_STEP: usize = 1 << 16;

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

mod choice;
#[cfg(test)]
mod tests;
