//! Starting a run, fresh or resumed: the output directory (after a crash: its interrupted writes
//! recovered), the base model and splits (checked before anything is written), the adapter,
//! optimizer and state (new, or a checkpoint's of the same recipe), the resolved recipe, the
//! micro-batch stream and the metrics log.

use std::path::Path;

use burn::tensor::Device;
use gemma4_data::{Batcher, Split};
use gemma4_lora::LoraAdapter;

use crate::checkpoint::{self, TrainerState};
use crate::error::{Result, TrainError};
use crate::metrics::MetricsLog;
use crate::optim::AdamW;
use crate::recipe::Recipe;
use crate::report::{say, warn};
use crate::setup::{Base, load_base, split};
use crate::stream::MicroBatches;
use crate::train::fingerprint;
use crate::trainer::{StepSettings, Trainer};

/// A run ready for its first step.
pub struct Started {
    pub trainer: Trainer,
    pub valid: Option<Split>,
    pub stream: MicroBatches,
    pub log: MetricsLog,
}

/// Open the run of `recipe` on `device`, weights in pieces of at most `piece_bytes` (resuming
/// from the checkpoint `resume`).
pub fn start(
    recipe: &Recipe,
    device: &Device,
    piece_bytes: usize,
    resume: Option<&Path>,
) -> Result<Started> {
    let out = &recipe.train.out_dir;
    // A run directory belongs to one run: checked before anything is written into it.
    crate::run_dir::claim(out, resume)?;
    std::fs::create_dir_all(out).map_err(|source| TrainError::Io { path: out.clone(), source })?;
    for dir in [out.clone(), out.join("base_model")] {
        gemma4_store::recover(&dir);
    }
    let base = load_base(recipe, device, piece_bytes)?;
    for w in &base.warnings {
        warn(w);
    }
    let (train_split, valid) = splits(&base, recipe)?;
    let (adapter, opt, state) = start_state(recipe, &base, resume)?;
    // Only now (the recipe is valid, the data loads, a resumed checkpoint matches) is anything written.
    gemma4_store::write_atomic(&out.join("recipe.resolved.toml"), recipe.to_toml().as_bytes())?;
    say(format_args!(
        "LoRA: {} modules, {} trainable parameters (r = {}, scale {:.3}); base model {} (frozen)",
        adapter.modules.len(),
        adapter.num_params(),
        adapter.config.r,
        adapter.scale(),
        base.dir.display()
    ));
    let (train, data) = (&recipe.train, &recipe.data);
    let batcher = Batcher::new(&train_split, train.batch_size, data.packing, data.max_seq_len)?;
    let log = MetricsLog::open(out, resume.map(|_| state.step), train.tensorboard)?;
    let stream = MicroBatches::new(batcher, train.seed, &state, data.train.clone());
    let trainer = Trainer::new(base.model, adapter, opt, state, StepSettings::from_recipe(recipe));
    Ok(Started { trainer, valid, stream, log })
}

/// The tokenised training and validation splits, each with target tokens.
fn splits(base: &Base, recipe: &Recipe) -> Result<(Split, Option<Split>)> {
    let train_split = split(base, recipe, &recipe.data.train)?;
    let valid_split = match &recipe.data.valid {
        Some(p) => Some(split(base, recipe, p)?),
        None => None,
    };
    // Checked before anything is written, so a bad split leaves the output directory as it was.
    for s in std::iter::once(&train_split).chain(&valid_split) {
        if s.stats.target_tokens == 0 {
            return Err(TrainError::Run(format!(
                "{}: no sample has target tokens ({} samples; with [data] mask_prompt = true only assistant turns and completions are trained)",
                s.path.display(),
                s.stats.samples
            )));
        }
    }
    say(format_args!("train {}", gemma4_data::format_stats(&train_split.stats)));
    if let Some(v) = &valid_split {
        say(format_args!("valid {}", gemma4_data::format_stats(&v.stats)));
    }
    Ok((train_split, valid_split))
}

/// A fresh adapter and state, or those of the checkpoint to resume from.
fn start_state(
    recipe: &Recipe,
    base: &Base,
    resume: Option<&Path>,
) -> Result<(LoraAdapter, AdamW, TrainerState)> {
    let fp = fingerprint(recipe);
    match resume {
        None => {
            let cfg = recipe.lora_config(&base.dir.display().to_string());
            let adapter = gemma4_lora::init_adapter(&base.model, &cfg, recipe.train.seed)?;
            Ok((adapter, AdamW::default(), TrainerState { fingerprint: fp, ..Default::default() }))
        }
        Some(dir) => {
            let (adapter, opt, state) = checkpoint::load(dir, &base.model)?;
            if state.fingerprint != fp {
                return Err(TrainError::Checkpoint {
                    path: dir.to_owned(),
                    reason: "written by a different recipe (model, data, LoRA, optimizer, schedule, batch or seed differ); resume needs the same recipe".into(),
                });
            }
            say(format_args!("resuming from {} at step {}", dir.display(), state.step));
            Ok((adapter, opt, state))
        }
    }
}
