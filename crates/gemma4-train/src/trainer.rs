//! The training step, decided in one place. A [`Trainer`] owns what a step changes (the adapter,
//! AdamW's moments, the f16 loss scale, the trainer state) and the frozen model it runs on;
//! [`Trainer::step`] takes one step's micro-batches and says what happened:
//!
//! ```text
//! forward/backward per micro-batch (loss × scale / step tokens), gradients summed
//! queued behind it: Σ g² per tensor → unscale-and-clip factor → AdamW on the adapter only
//! one read-back (loss, Σ g²), then decided:
//!   loss finite?  no → non-finite (skipped under skip_nonfinite, else the caller stops)
//!   f16 scaled gradients overflowed? → skipped, loss scale halved
//!   grad norm finite?  no → non-finite
//!   else → updated
//! anything but updated puts the adapter and AdamW's state back as they were
//! ```
//!
//! The update is queued before anything is read so that the device runs the optimizer straight
//! after the backward pass instead of waiting for the host (docs/performance.md).
//!
//! `train` (the loop) and `bench` both step through here.

use std::collections::BTreeMap;

use burn::tensor::{DType, Tensor};
use gemma4_data::Batch;
use gemma4_lora::LoraAdapter;
use gemma4_model::{Gemma4TextModel, PleRows};

use crate::checkpoint::TrainerState;
use crate::error::Result;
use crate::optim::{
    AdamW, LossScale, clip_factor, global_norm, overflowed_keys, square_sums, tensor_sums,
};
use crate::recipe::{OptimSection, Recipe, Recompute};
use crate::step::{Accumulate, Ahead, Phases, accumulate_gradients, apply_update};

/// The settings a step reads.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSettings {
    /// AdamW's hyper-parameters and the gradient clip (`max_grad_norm`, 0 = off).
    pub optim: OptimSection,
    /// Layers recomputed in the backward pass ([`crate::recompute`]), resolved: `auto` is
    /// none here (the memory plan resolves it before a run).
    pub gradient_checkpointing: Recompute,
    /// Skip a step with a non-finite loss or gradient instead of stopping.
    pub skip_nonfinite: bool,
    /// Dropout masks are seeded from this and the step number.
    pub seed: u64,
}

impl StepSettings {
    /// The step settings of a recipe.
    pub fn from_recipe(recipe: &Recipe) -> Self {
        Self {
            optim: recipe.optim.clone(),
            gradient_checkpointing: recipe.train.gradient_checkpointing,
            skip_nonfinite: recipe.train.skip_nonfinite,
            seed: recipe.train.seed,
        }
    }
}

/// What one [`Trainer::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The adapter was updated.
    Updated {
        /// Mean loss per target token of the step.
        loss: f64,
        /// Global gradient norm before clipping (unscaled).
        grad_norm: f64,
        /// Target tokens of the step.
        tokens: usize,
    },
    /// f16: the scaled gradients overflowed; the step was skipped and the loss scale halved.
    Overflow {
        /// Mean loss per target token of the step (finite).
        loss: f64,
        /// The first gradient (by PEFT key) whose `Σ g²` overflowed (a non-finite value, or beyond f32).
        first: Option<String>,
        /// How many gradients hold one, of `tensors`.
        count: usize,
        tensors: usize,
        /// The loss scale from now on.
        scale: f64,
    },
    /// A non-finite loss or gradient norm: no update. `skipped` under `skip_nonfinite` (the
    /// step counts as done); otherwise the caller stops.
    NonFinite { loss: f64, grad_norm: f64, skipped: bool },
}

/// The model, the adapter being trained and everything an optimizer step updates.
pub struct Trainer {
    /// The frozen base model (on an autodiff device).
    pub model: Gemma4TextModel,
    pub adapter: LoraAdapter,
    pub opt: AdamW,
    pub loss_scale: LossScale,
    /// Step, data position, best validation, ... (saved in checkpoints).
    pub state: TrainerState,
    pub settings: StepSettings,
    /// Time the phases of each step (syncing the device between them; `bench --profile`).
    pub profile: bool,
    /// `(phase, seconds)` of the last step, when profiling.
    pub phases: Vec<(&'static str, f64)>,
    /// The next micro-batch's PLE rows, uploaded during this step's backward pass.
    ahead: Option<PleRows>,
}

impl Trainer {
    /// A trainer for `adapter` on `model`, continuing from `opt` and `state` (fresh or restored
    /// from a checkpoint: the loss scale too, so a resumed f16 run keeps its scale). The
    /// adapter's tensors are put on the tape.
    pub fn new(
        model: Gemma4TextModel,
        mut adapter: LoraAdapter,
        opt: AdamW,
        state: TrainerState,
        settings: StepSettings,
    ) -> Self {
        let loss_scale = state.loss_scale.clone().unwrap_or_else(|| LossScale::new(model.dtype()));
        adapter.map_tensors(|_, t| t.autodiff().require_grad());
        Self {
            model,
            adapter,
            opt,
            loss_scale,
            state,
            settings,
            profile: false,
            phases: Vec::new(),
            ahead: None,
        }
    }

    /// One optimizer step over `micro` (the step's micro-batches) at learning rate `lr`: the
    /// one place the step is decided. The state's step advances unless the outcome is a
    /// non-finite loss or gradient that is not skipped.
    pub fn step(&mut self, micro: &[Batch], lr: f64) -> Result<StepOutcome> {
        self.step_then(micro, lr, None)
    }

    /// [`Trainer::step`], knowing the next step's first micro-batch `next`: its PLE rows go up
    /// while this step's backward pass runs (as do those of each micro-batch after the first).
    pub fn step_then(
        &mut self,
        micro: &[Batch],
        lr: f64,
        next: Option<&Batch>,
    ) -> Result<StepOutcome> {
        let step = self.state.step + 1;
        let tokens: usize = micro.iter().map(|b| b.target_tokens).sum();
        let mut phases = if self.profile { Phases::on(&self.model.device) } else { Phases::off() };
        let pass = Accumulate {
            tokens,
            seed: self.settings.seed ^ ((step as u64) << 16), // dropout masks
            recompute_layers: self.settings.gradient_checkpointing.layers(self.model.layers.len()),
            loss_scale: self.loss_scale.scale,
        };
        let ahead = Ahead { rows: &mut self.ahead, next };
        let (loss_sum, grads) = accumulate_gradients(
            &self.model,
            &mut self.adapter,
            micro,
            (&pass, ahead),
            &mut phases,
        )?;
        let keys: Vec<String> = grads.keys().cloned().collect();
        let before = (self.adapter.tensors(), self.opt.clone());
        let parts = square_sums(&grads);
        let factor = match &parts {
            Some(parts) => {
                clip_factor(parts, self.loss_scale.scale, self.settings.optim.max_grad_norm)
            }
            None => Tensor::ones([1], (&self.model.device.clone().without_autodiff(), DType::F32)),
        };
        let optim = &self.settings.optim;
        apply_update(&mut self.adapter, &mut self.opt, optim, lr, grads, &factor);
        let (loss_sum, sums) = read_back(loss_sum, parts);
        phases.mark("clip + optimizer");
        self.phases = phases.times;
        let outcome = self.decide(loss_sum / tokens.max(1) as f64, &sums, &keys, tokens);
        if matches!(outcome, StepOutcome::Updated { .. }) {
            self.state.trained_tokens += tokens;
        } else {
            self.restore(before);
        }
        if !matches!(outcome, StepOutcome::NonFinite { skipped: false, .. }) {
            self.state.step = step;
        }
        Ok(outcome)
    }

    /// What the step did, from its `loss` and the gradients' [`tensor_sums`] `sums` (by `keys`):
    /// the rule in the module's doc. Updates the loss scale and the skipped-step count.
    fn decide(&mut self, loss: f64, sums: &[f64], keys: &[String], tokens: usize) -> StepOutcome {
        let scaled_norm = global_norm(sums);
        let unscaled =
            if loss.is_finite() { self.loss_scale.unscale(scaled_norm) } else { Some(scaled_norm) };
        self.state.loss_scale = Some(self.loss_scale.clone());
        let Some(grad_norm) = unscaled else {
            let bad = overflowed_keys(keys, sums);
            return StepOutcome::Overflow {
                loss,
                first: bad.first().cloned(),
                count: bad.len(),
                tensors: keys.len(),
                scale: self.loss_scale.scale,
            };
        };
        if !loss.is_finite() || !grad_norm.is_finite() {
            let skipped = self.settings.skip_nonfinite;
            self.state.skipped_steps += usize::from(skipped);
            return StepOutcome::NonFinite { loss, grad_norm, skipped };
        }
        StepOutcome::Updated { loss, grad_norm, tokens }
    }

    /// Put back the adapter's tensors and AdamW's state as they were before a step's update.
    fn restore(&mut self, (mut tensors, opt): (BTreeMap<String, Tensor<2>>, AdamW)) {
        self.adapter.map_tensors(|key, t| tensors.remove(key).unwrap_or(t));
        self.opt = opt;
    }

    /// The weights' dtype (f16 turns on loss scaling).
    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }
}

/// The step's one read-back: the summed loss and each gradient's `Σ g²` (f64) from the
/// [`square_sums`] `parts`.
fn read_back(loss_sum: Tensor<1>, parts: Option<Tensor<2>>) -> (f64, Vec<f64>) {
    let loss_sum = loss_sum.without_autodiff().cast(DType::F32);
    let Some(parts) = parts else {
        return (f64::from(loss_sum.into_scalar::<f32>()), Vec::new());
    };
    let per = parts.dims()[1];
    let flat = parts.without_autodiff().cast(DType::F32).flatten::<1>(0, 1);
    let values: Vec<f32> = Tensor::cat(vec![loss_sum, flat], 0).into_data().iter::<f32>().collect();
    (f64::from(values[0]), tensor_sums(&values[1..], per))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use gemma4_lora::{LoraConfig, TargetModules};
    use gemma4_model::{Checkpoint, RandomInit};

    /// The tiny built-in model with random weights, and a batch of one short row.
    fn tiny(dtype: DType) -> (Trainer, Batch) {
        let json = crate::tiny::tiny_config(64);
        let cfg = gemma4_model::Gemma4TextConfig::from_json(&json).expect("config").config;
        let device = Device::flex().autodiff();
        let ckpt = Checkpoint::random(&cfg, RandomInit { seed: 1, std: 0.02 });
        let (model, _) = Gemma4TextModel::load(cfg, &ckpt, &device, dtype).expect("model");
        let lora = LoraConfig::new(2, 4.0, TargetModules::List(vec!["q_proj".into()]));
        let adapter = gemma4_lora::init_adapter(&model, &lora, 0).expect("adapter");
        let optim = OptimSection {
            lr: 1e-3,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
        };
        let settings = StepSettings {
            optim,
            gradient_checkpointing: Recompute::Off,
            skip_nonfinite: false,
            seed: 0,
        };
        let trainer =
            Trainer::new(model, adapter, AdamW::default(), TrainerState::default(), settings);
        let (b, s) = (1, 8);
        let batch = Batch {
            ids: (0..s as u32).map(|i| i * 7 % 64).collect(),
            target: (0..s).map(|i| i > 0).collect(),
            batch: b,
            seq: s,
            attention_mask: vec![true; s],
            segments: None,
            positions: None,
            target_tokens: s - 1,
            lines: vec![3],
        };
        (trainer, batch)
    }

    #[test]
    fn a_finite_step_updates_and_counts_tokens() {
        let (mut t, batch) = tiny(DType::F32);
        let out = t.step(std::slice::from_ref(&batch), 1e-3).expect("step");
        let StepOutcome::Updated { loss, grad_norm, tokens } = out else { panic!("{out:?}") };
        assert!(
            loss.is_finite() && grad_norm.is_finite() && tokens == 7,
            "{loss} {grad_norm} {tokens}"
        );
        assert_eq!((t.state.step, t.state.trained_tokens, t.opt.step), (1, 7, 1));
    }

    #[test]
    fn an_overflowing_f16_step_is_skipped_at_half_the_scale() {
        let (mut t, batch) = tiny(DType::F16);
        let values = |t: &Trainer| -> Vec<Vec<f32>> {
            t.adapter.tensors().into_values().map(|p| p.into_data().iter().collect()).collect()
        };
        let before = values(&t);
        t.loss_scale.scale = 1e300; // the scaled f16 gradients cannot hold this
        let out = t.step(std::slice::from_ref(&batch), 1e-3).expect("step");
        let StepOutcome::Overflow { first, count, scale, .. } = out else { panic!("{out:?}") };
        assert!(first.is_some() && count > 0 && scale == 5e299, "{first:?} {count} {scale}");
        assert_eq!((t.state.step, t.opt.step, t.state.trained_tokens), (1, 0, 0), "no update");
        assert!(t.opt.m.is_empty() && t.opt.v.is_empty(), "AdamW's moments put back");
        assert_eq!(values(&t), before, "the queued update was undone");
    }

    #[test]
    fn a_non_finite_step_stops_or_is_skipped() {
        let (mut t, batch) = tiny(DType::F32);
        t.adapter.map_tensors(|_, p| {
            p.without_autodiff().mul_scalar(f64::NAN).autodiff().require_grad()
        });
        let out = t.step(std::slice::from_ref(&batch), 1e-3).expect("step");
        assert!(matches!(out, StepOutcome::NonFinite { skipped: false, .. }), "{out:?}");
        assert_eq!(t.state.step, 0, "a stop does not count the step");
        t.settings.skip_nonfinite = true;
        let out = t.step(std::slice::from_ref(&batch), 1e-3).expect("step");
        assert!(matches!(out, StepOutcome::NonFinite { skipped: true, .. }), "{out:?}");
        assert_eq!((t.state.step, t.state.skipped_steps, t.opt.step), (1, 1, 0));
    }
}
