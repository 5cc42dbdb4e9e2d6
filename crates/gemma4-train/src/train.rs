//! The training loop, top to bottom (nanoGPT/mlx-lm shaped):
//!
//! ```text
//! start (or resume)                                  start.rs
//! for step in start+1 ..= iters:
//!     schedule: grad_accum micro-batches (seeded order per epoch), lr     stream.rs, schedule.rs
//!     step:     loss = Σ CE / target tokens of the step; backward; clip; AdamW   trainer.rs
//!     report · validate · checkpoint                 report.rs, eval.rs, checkpoint.rs
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use gemma4_data::{Batch, Split};

use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::eval::evaluate;
use crate::metrics::write_plot;
use crate::optim::nonfinite_keys;
use crate::recipe::Recipe;
use crate::report::{Reporter, StepReport, say};
use crate::schedule::learning_rate;
use crate::start::{Started, start};
use crate::trainer::{StepOutcome, Trainer};

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
    (r.train.iters, r.train.report_every, r.train.skip_nonfinite) = (0, 0, false);
    r.train.gradient_checkpointing = crate::recipe::Recompute::Off;
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
pub fn train_until(
    recipe: &Recipe,
    device: &Device,
    piece_bytes: usize,
    resume: Option<&Path>,
    interrupt: &AtomicBool,
) -> Result<Summary> {
    let Started { trainer, valid, mut stream, log } = start(recipe, device, piece_bytes, resume)?;
    let (step, iters) = (trainer.state.step, recipe.train.iters);
    let report = Reporter::new(log, (step, iters), recipe.train.report_every, device);
    let mut run =
        Run { recipe, trainer, valid, report, last_loss: None, first_val: None, last_val: None };
    if step == 0 {
        run.first_val = run.validate(0)?;
    }
    for step in step + 1..=iters {
        let micro = stream.next_step(recipe.train.grad_accum, &mut run.trainer.state)?;
        let lr = learning_rate(&recipe.schedule, recipe.optim.lr, step, iters);
        let next = if step < iters { stream.peek(&run.trainer.state) } else { None };
        let outcome = run.trainer.step_then(&micro, lr, next)?;
        if !run.report(step, lr, &micro, outcome)? {
            continue; // skipped: no update to evaluate or save
        }
        let stop = run.evaluate(step)?;
        let interrupted = interrupt.load(Ordering::SeqCst);
        run.save(step, stop || interrupted)?;
        if interrupted {
            return Ok(run.interrupted(step));
        }
        if stop {
            run.early_stop(step);
            break;
        }
    }
    run.finish()
}

/// Which it is, for a non-finite step: the adapter's weights, the optimizer state (both read
/// back here), else these samples as the base model's weights meet them. The config and a
/// checkpoint's numbers are checked when read, so they are not the cause.
fn nonfinite_cause(trainer: &Trainer) -> String {
    let first = |keys: Vec<String>| keys.first().map(|k| (k.clone(), keys.len() - 1));
    if let Some((k, more)) = first(nonfinite_keys(&trainer.adapter.tensors())) {
        return format!(
            "the adapter's weights ({k} and {more} more are not finite: training diverged; lower [optim] lr or max_grad_norm)"
        );
    }
    for (which, moments) in [("m", &trainer.opt.m), ("v", &trainer.opt.v)] {
        if let Some((k, more)) = first(nonfinite_keys(moments)) {
            return format!("the optimizer state ({which}.{k} and {more} more are not finite)");
        }
    }
    "the data meeting the base model's weights (the adapter and optimizer state are finite, config.json was checked): a weight these samples' tokens reach is not finite, or overflows in this dtype (try [model] dtype = \"f32\")".into()
}

/// A run in progress: the trainer, the validation split and what the summary will say.
struct Run<'a> {
    recipe: &'a Recipe,
    trainer: Trainer,
    valid: Option<Split>,
    report: Reporter,
    last_loss: Option<f64>,
    first_val: Option<f64>,
    last_val: Option<f64>,
}

impl Run<'_> {
    /// Report a step's outcome; true if the adapter was updated. A non-finite step that is not
    /// skipped is an error naming the samples' lines.
    fn report(
        &mut self,
        step: usize,
        lr: f64,
        micro: &[Batch],
        outcome: StepOutcome,
    ) -> Result<bool> {
        let state = &self.trainer.state;
        match outcome {
            StepOutcome::Updated { loss, grad_norm, tokens } => {
                self.last_loss = Some(loss);
                let f16 = self.trainer.dtype() == burn::tensor::DType::F16;
                self.report.updated(StepReport {
                    step,
                    lr,
                    loss,
                    grad_norm,
                    tokens,
                    trained_tokens: state.trained_tokens,
                    loss_scale: f16.then_some(self.trainer.loss_scale.scale),
                })?;
                return Ok(true);
            }
            StepOutcome::Overflow { first, count, scale, .. } => say(format_args!(
                "step {step:>5} | f16 gradient overflow in {} (+{} more): step skipped, loss scale now {scale}",
                first.as_deref().unwrap_or("-"),
                count.saturating_sub(1)
            )),
            StepOutcome::NonFinite { loss, grad_norm, skipped: true } => say(format_args!(
                "step {step:>5} | skipped: non-finite loss {loss} / grad norm {grad_norm} ({} skipped so far)",
                state.skipped_steps
            )),
            StepOutcome::NonFinite { loss, grad_norm, skipped: false } => {
                return Err(TrainError::Run(format!(
                    "step {step}: non-finite {} (loss {loss}, grad norm {grad_norm}) on samples at lines {:?} of {}; cause: {}; the last checkpoint is intact (set train.skip_nonfinite = true to skip such steps)",
                    if loss.is_finite() { "gradient" } else { "loss" },
                    micro.iter().flat_map(|b| b.lines.iter().copied()).collect::<Vec<_>>(),
                    self.recipe.data.train.display(),
                    nonfinite_cause(&self.trainer)
                )));
            }
        }
        Ok(false)
    }

    /// The validation loss at `step` (None without a validation split), reported.
    fn validate(&mut self, step: usize) -> Result<Option<f64>> {
        let Some(v) = &self.valid else {
            return Ok(None);
        };
        let (model, adapter) = (&self.trainer.model, &self.trainer.adapter);
        let val = evaluate(model, Some(adapter), v, self.recipe, self.recipe.eval.batches)?;
        self.report.validation(step, val)?;
        self.last_val = Some(val);
        Ok(Some(val))
    }

    /// Validate when due; a new best adapter is saved. True: stop early (patience exhausted).
    fn evaluate(&mut self, step: usize) -> Result<bool> {
        let recipe = self.recipe;
        let due = recipe.eval.every > 0 && step.is_multiple_of(recipe.eval.every)
            || step == recipe.train.iters;
        let Some(val) = (if due { self.validate(step)? } else { None }) else {
            return Ok(false);
        };
        let state = &mut self.trainer.state;
        if state.best_val.is_none_or(|b| val < b) {
            (state.best_val, state.best_step, state.evals_since_best) = (Some(val), step, 0);
            gemma4_lora::peft_io::save(&self.trainer.adapter, &recipe.train.out_dir.join("best"))?;
            return Ok(false);
        }
        state.evals_since_best += 1;
        let patience = recipe.eval.early_stopping_patience;
        Ok(patience > 0 && state.evals_since_best >= patience)
    }

    /// Save a checkpoint when due (or `now`: stopping early, or interrupted).
    fn save(&self, step: usize, now: bool) -> Result<()> {
        let every = self.recipe.checkpoint.every;
        if now || every > 0 && step.is_multiple_of(every) || step == self.recipe.train.iters {
            let t = &self.trainer;
            let root = self.recipe.train.out_dir.join("checkpoints");
            checkpoint::save(
                &root,
                &t.adapter,
                &t.opt,
                &t.state,
                self.recipe.checkpoint.keep_last,
            )?;
        }
        Ok(())
    }

    fn early_stop(&self, step: usize) {
        let s = &self.trainer.state;
        say(format_args!(
            "early stop at step {step}: no improvement in {} validations (best {:.4} at step {})",
            s.evals_since_best,
            s.best_val.unwrap_or(f64::NAN),
            s.best_step
        ));
    }

    fn summary(&self, steps: usize, interrupted: bool) -> Summary {
        let s = &self.trainer.state;
        Summary {
            steps,
            final_train_loss: self.last_loss,
            first_val_loss: self.first_val,
            final_val_loss: self.last_val,
            best_val_loss: s.best_val,
            out_dir: self.recipe.train.out_dir.clone(),
            interrupted,
            skipped_steps: s.skipped_steps,
        }
    }

    /// Interrupted after the checkpoint of `step`.
    fn interrupted(&self, step: usize) -> Summary {
        self.report.finish();
        let dir = self.recipe.train.out_dir.join("checkpoints").join(format!("{step:07}"));
        say(format_args!(
            "interrupted: checkpoint saved at step {step} in {} (`train --resume` continues from the newest checkpoint, `--resume {}` from this one)",
            dir.display(),
            dir.display()
        ));
        self.summary(step, true)
    }

    /// The end of the loop: the final adapter and the loss plot.
    fn finish(mut self) -> Result<Summary> {
        self.report.finish();
        let out = &self.recipe.train.out_dir;
        gemma4_lora::peft_io::save(&self.trainer.adapter, &out.join("adapter"))?;
        write_plot(&out.join("loss.svg"), &self.report.log.train, &self.report.log.valid)?;
        self.first_val = self.first_val.or_else(|| self.report.log.valid.first().map(|v| v.1));
        Ok(self.summary(self.trainer.state.step, false))
    }
}
