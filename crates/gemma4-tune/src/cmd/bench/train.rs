//! `bench`'s training phase: warm-up steps, then timed steps, each one [`Trainer::step`] (the
//! step `train` takes) and a device sync; per-phase times with `--profile`.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use gemma4_train::{StepOutcome, Trainer};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::flops::Flops;
use super::report::{Peaks, mem_text, memory};
use super::run::{BenchSettings, mean, random_batch, secs, sync};

/// Overflowing f16 steps that may lengthen the warm-up (from a scale of 65,536 to 1).
const SETTLE: usize = 16;

/// Run the training steps; returns the report's `train` object.
pub fn train_steps(
    trainer: &mut Trainer,
    s: &BenchSettings,
    rng: &mut ChaCha8Rng,
    flops: &Flops,
    peaks: &mut Peaks,
    device: &Device,
) -> Result<Value> {
    let vocab = trainer.model.config.vocab_size;
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    let mut phase_sums: Vec<(&'static str, f64)> = Vec::new();
    let mut skipped = 0usize;
    // f16's loss scale starts high and halves on each overflowing step, which updates nothing:
    // until the first update the warm-up goes on (at most `SETTLE` more), so timed steps update;
    // an overflow after that is a timed, skipped step (`skipped`).
    let (mut warmup, mut i, mut settling) = (s.warmup, 0, true);
    let first = random_batch(rng, s.batch, s.seq, vocab);
    // Each batch is drawn a step early, so its PLE rows go up during the step before (as
    // `train` does with its data).
    let mut next = first.clone();
    while i < warmup + s.steps {
        let batch = next;
        next =
            if s.repeat_batch { first.clone() } else { random_batch(rng, s.batch, s.seq, vocab) };
        let t = Instant::now();
        let outcome = trainer.step_then(std::slice::from_ref(&batch), s.lr, Some(&next))?;
        sync(device)?;
        let dt = secs(t);
        let loss = match outcome {
            StepOutcome::Updated { loss, .. } => {
                settling = false;
                loss
            }
            StepOutcome::Overflow { loss, first, count, tensors, scale } => {
                let first = first.as_deref().unwrap_or("-");
                eprintln!(
                    "bench: f16 gradient overflow in {count} of {tensors} tensors (first: {first}); step skipped, loss scale now {scale}"
                );
                if settling && i >= warmup && warmup < s.warmup + SETTLE {
                    warmup += 1;
                }
                skipped += usize::from(i >= warmup);
                loss
            }
            StepOutcome::NonFinite { loss, grad_norm, .. } => {
                bail!("bench step {}: non-finite gradients (norm {grad_norm}, loss {loss})", i + 1)
            }
        };
        if !trainer.phases.is_empty() {
            let text: Vec<String> =
                trainer.phases.iter().map(|(n, t)| format!("{n} {t:.3} s")).collect();
            eprintln!("bench:   {}", text.join(", "));
        }
        if i >= warmup {
            for (k, (name, t)) in trainer.phases.iter().enumerate() {
                match phase_sums.get_mut(k) {
                    Some(p) => p.1 += t,
                    None => phase_sums.push((name, *t)),
                }
            }
        }
        peaks.sample();
        let warm = if i < warmup { " (warm-up)" } else { "" };
        eprintln!(
            "bench: step {}/{} {dt:.3} s, loss {loss:.4}, {}{warm}",
            i + 1,
            warmup + s.steps,
            mem_text(memory(device))
        );
        if i >= warmup {
            times.push(dt);
            losses.push(loss);
        }
        i += 1;
    }
    let train_tokens = (s.batch * s.seq) as f64;
    let step_s = mean(&times);
    let phases = (!phase_sums.is_empty()).then(|| {
        let per_step = |t: f64| json!(t / times.len().max(1) as f64);
        phase_sums
            .iter()
            .map(|(n, t)| (n.to_string(), per_step(*t)))
            .collect::<serde_json::Map<_, _>>()
    });
    Ok(json!({
        "step_s": step_s, "step_s_all": times, "tokens_per_s": train_tokens / step_s,
        "tflops": flops.train() * train_tokens / step_s / 1e12,
        "loss_first": losses.first(), "loss_last": losses.last(), "loss_all": losses,
        "skipped_steps": skipped, "warmup_steps": warmup, "loss_scale": trainer.loss_scale.scale,
        "phases_s": phases,
    }))
}
