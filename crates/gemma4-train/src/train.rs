//! The training loop, top to bottom (nanoGPT/mlx-lm shaped):
//!
//! ```text
//! for step in start+1 ..= iters:
//!     take grad_accum micro-batches (seeded order per epoch)
//!     loss = Σ CE over target tokens / target tokens of the whole step   (token-weighted)
//!     backward per micro-batch, gradients summed
//!     clip by global norm, AdamW on the adapter only
//!     report · validate · checkpoint
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use gemma4_data::Batcher;
use gemma4_lora::LoraAdapter;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::checkpoint::{self, TrainerState};
use crate::error::{Result, TrainError};
use crate::eval::evaluate;
use crate::metrics::{MetricsLog, train_record, write_plot};
use crate::optim::{AdamW, LossScale, global_norm};
use crate::step::{Phases, accumulate_gradients, apply_update};
use crate::recipe::Recipe;
use crate::schedule::learning_rate;
use crate::setup::{Base, load_base, split};

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    pub steps: usize,
    pub final_train_loss: Option<f64>,
    pub first_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub out_dir: PathBuf,
    /// Stopped by an interrupt (Ctrl-C) after saving a checkpoint.
    pub interrupted: bool,
    pub skipped_steps: usize,
}

/// Hash of the settings a resumed run must share with the run that wrote the checkpoint.
pub fn fingerprint(recipe: &Recipe) -> String {
    let mut r = recipe.clone();
    // Free to change on resume: length, reporting, where outputs go, the non-finite policy,
    // gradient checkpointing (memory only).
    (r.train.iters, r.train.report_every, r.train.skip_nonfinite, r.train.gradient_checkpointing) = (0, 0, false, false);
    r.train.out_dir = PathBuf::new();
    r.eval = Default::default();
    r.checkpoint = Default::default();
    let text = r.to_toml();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Run (or resume) the recipe on `device` (an autodiff device; weights in pieces of at most
/// [`gemma4_model::MAX_PIECE_BYTES`]).
pub fn train(recipe: &Recipe, device: &Device, resume: Option<&Path>) -> Result<Summary> {
    train_until(recipe, device, gemma4_model::MAX_PIECE_BYTES, resume, &AtomicBool::new(false))
}

/// As [`train`], with weights in pieces of at most `piece_bytes` (the device's limit); when
/// `interrupt` becomes true the loop finishes its step, saves a checkpoint and returns
/// (`Summary.interrupted`).
pub fn train_until(recipe: &Recipe, device: &Device, piece_bytes: usize, resume: Option<&Path>, interrupt: &AtomicBool) -> Result<Summary> {
    let out = &recipe.train.out_dir;
    std::fs::create_dir_all(out).map_err(|source| TrainError::Io { path: out.clone(), source })?;
    for dir in [out.clone(), out.join("base_model")] {
        gemma4_store::recover(&dir);
    }
    let base = load_base(recipe, device, piece_bytes)?;
    for w in &base.warnings {
        eprintln!("warning: {w}");
    }
    let train_split = split(&base, recipe, &recipe.data.train)?;
    let valid_split = match &recipe.data.valid {
        Some(p) => Some(split(&base, recipe, p)?),
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
    println!("train {}", gemma4_data::format_stats(&train_split.stats));
    if let Some(v) = &valid_split {
        println!("valid {}", gemma4_data::format_stats(&v.stats));
    }
    let model = &base.model;
    let (mut adapter, mut opt, mut state) = start_state(recipe, &base, resume)?;
    // Restored on resume, so a resumed f16 run continues with the same scale.
    let mut loss_scale = state.loss_scale.clone().unwrap_or_else(|| LossScale::new(model.dtype()));
    // Only now (the recipe is valid, the data loads, a resumed checkpoint matches) is anything written.
    gemma4_store::write_atomic(&out.join("recipe.resolved.toml"), recipe.to_toml().as_bytes())?;
    adapter.map_tensors(|_, t| t.autodiff().require_grad());
    println!(
        "LoRA: {} modules, {} trainable parameters (r = {}, scale {:.3}); base model {} (frozen)",
        adapter.modules.len(),
        adapter.num_params(),
        adapter.config.r,
        adapter.scale(),
        base.dir.display()
    );
    let batcher = Batcher::new(&train_split, recipe.train.batch_size, recipe.data.packing, recipe.data.max_seq_len)?;
    let mut log = MetricsLog::open(out, resume.map(|_| state.step))?;
    let iters = recipe.train.iters;
    let bar = ProgressBar::new(iters as u64).with_position(state.step as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut epoch_batches = batcher.epoch(state.epoch, recipe.train.seed);
    let (t0, mut window_tokens, mut window_start) = (Instant::now(), 0usize, Instant::now());
    let mut last_loss = None;
    let mut first_val = None;
    let mut last_val = None;
    if state.step == 0
        && let Some(v) = &valid_split
    {
        let val = evaluate(model, Some(&adapter), v, recipe, recipe.eval.batches)?;
        say(&bar, format!("step {:>5} | val_loss {val:.4} | val_ppl {:.2}", 0, val.exp()));
        log.record(json!({"step": 0, "val_loss": val, "val_ppl": val.exp()}))?;
        first_val = Some(val);
    }
    for step in state.step + 1..=iters {
        // 1. The step's micro-batches (advancing epochs, each with its own seeded order).
        let mut micro = Vec::with_capacity(recipe.train.grad_accum);
        while micro.len() < recipe.train.grad_accum {
            if state.batch_index >= epoch_batches.len() {
                if epoch_batches.is_empty() {
                    return Err(TrainError::Run(format!("{}: no batch with target tokens", recipe.data.train.display())));
                }
                state.epoch += 1;
                state.batch_index = 0;
                epoch_batches = batcher.epoch(state.epoch, recipe.train.seed);
            }
            micro.push(epoch_batches[state.batch_index].clone());
            state.batch_index += 1;
        }
        let tokens: usize = micro.iter().map(|b| b.target_tokens).sum();
        let lr = learning_rate(&recipe.schedule, recipe.optim.lr, step, iters);

        // 2. Forward/backward per micro-batch; loss normalised by the step's target tokens.
        let seed = recipe.train.seed ^ ((step as u64) << 16); // dropout masks
        let (loss_sum, grads) = accumulate_gradients(model, &mut adapter, &micro, tokens, device, seed, recipe.train.gradient_checkpointing, loss_scale.scale, &mut Phases::off())?;
        let loss = loss_sum / tokens.max(1) as f64;
        let scaled_norm = global_norm(&grads);
        let Some((grad_norm, factor)) = (if loss.is_finite() { loss_scale.unscale(scaled_norm, recipe.optim.max_grad_norm) } else { Some((scaled_norm, 1.0)) }) else {
            // f16: the scaled gradients overflowed; this step is skipped at a halved scale.
            state.step = step;
            state.loss_scale = Some(loss_scale.clone());
            let bad = crate::optim::nonfinite_keys(&grads);
            say(&bar, format!("step {step:>5} | f16 gradient overflow in {} (+{} more): step skipped, loss scale now {}", bad.first().map_or("-", |k| k.as_str()), bad.len().saturating_sub(1), loss_scale.scale));
            continue;
        };
        state.loss_scale = Some(loss_scale.clone());
        if (!loss.is_finite() || !grad_norm.is_finite()) && recipe.train.skip_nonfinite {
            state.skipped_steps += 1;
            state.step = step;
            say(&bar, format!("step {step:>5} | skipped: non-finite loss {loss} / grad norm {grad_norm} ({} skipped so far)", state.skipped_steps));
            continue;
        }
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(TrainError::Run(format!(
                "step {step}: non-finite {} (loss {loss}, grad norm {grad_norm}) on samples at lines {:?} of {}; the last checkpoint is intact (set train.skip_nonfinite = true to skip such steps)",
                if loss.is_finite() { "gradient" } else { "loss" },
                micro.iter().flat_map(|b| b.lines.iter().copied()).collect::<Vec<_>>(),
                recipe.data.train.display()
            )));
        }

        // 3. AdamW on the adapter only.
        apply_update(&mut adapter, &mut opt, &recipe.optim, lr, grads, factor);
        state.step = step;
        state.trained_tokens += tokens;
        window_tokens += tokens;
        last_loss = Some(loss);

        // 4. Report, validate, checkpoint.
        let tps = window_tokens as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s"));
        if step % recipe.train.report_every.max(1) == 0 || step == iters {
            say(&bar, format!("step {step:>5} | loss {loss:.4} | lr {lr:.2e} | grad_norm {grad_norm:.3} | tok/s {tps:.0} | tokens {}", state.trained_tokens));
            log.record(train_record(step, loss, lr, grad_norm, tps, state.trained_tokens, t0.elapsed().as_secs_f64()))?;
            (window_tokens, window_start) = (0, Instant::now());
        }
        let eval_now = recipe.eval.every > 0 && step % recipe.eval.every == 0 || step == iters;
        let mut stop = false;
        if let (true, Some(v)) = (eval_now, &valid_split) {
            let val = evaluate(model, Some(&adapter), v, recipe, recipe.eval.batches)?;
            say(&bar, format!("step {step:>5} | val_loss {val:.4} | val_ppl {:.2}", val.exp()));
            log.record(json!({"step": step, "val_loss": val, "val_ppl": val.exp()}))?;
            last_val = Some(val);
            if state.best_val.is_none_or(|b| val < b) {
                (state.best_val, state.best_step, state.evals_since_best) = (Some(val), step, 0);
                gemma4_lora::peft_io::save(&adapter, &out.join("best"))?;
            } else {
                state.evals_since_best += 1;
                stop = recipe.eval.early_stopping_patience > 0 && state.evals_since_best >= recipe.eval.early_stopping_patience;
            }
        }
        let interrupted = interrupt.load(Ordering::SeqCst);
        let save_now = recipe.checkpoint.every > 0 && step % recipe.checkpoint.every == 0 || step == iters || stop || interrupted;
        if save_now {
            checkpoint::save(&out.join("checkpoints"), &adapter, &opt, &state, recipe.checkpoint.keep_last)?;
        }
        if interrupted {
            bar.finish_and_clear();
            println!("interrupted: checkpoint saved at step {step} in {} (continue with --resume)", out.join("checkpoints").display());
            return Ok(Summary { steps: step, final_train_loss: last_loss, first_val_loss: first_val, final_val_loss: last_val, best_val_loss: state.best_val, out_dir: out.clone(), interrupted: true, skipped_steps: state.skipped_steps });
        }
        if stop {
            say(&bar, format!("early stop at step {step}: no improvement in {} validations (best {:.4} at step {})", state.evals_since_best, state.best_val.unwrap_or(f64::NAN), state.best_step));
            break;
        }
    }
    bar.finish_and_clear();
    gemma4_lora::peft_io::save(&adapter, &out.join("adapter"))?;
    write_plot(&out.join("loss.svg"), &log.train, &log.valid)?;
    let first_val = first_val.or_else(|| log.valid.first().map(|v| v.1));
    Ok(Summary { steps: state.step, final_train_loss: last_loss, first_val_loss: first_val, final_val_loss: last_val, best_val_loss: state.best_val, out_dir: out.clone(), interrupted: false, skipped_steps: state.skipped_steps })
}

/// A fresh adapter and state, or those of the checkpoint to resume from.
fn start_state(recipe: &Recipe, base: &Base, resume: Option<&Path>) -> Result<(LoraAdapter, AdamW, TrainerState)> {
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
            println!("resuming from {} at step {}", dir.display(), state.step);
            Ok((adapter, opt, state))
        }
    }
}


/// Print a line above the progress bar (or plainly when the bar is hidden, e.g. not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() { println!("{line}") } else { bar.println(line) }
}
