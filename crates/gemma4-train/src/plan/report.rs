//! A [`MemoryPlan`]: both estimates, the device's memory, the recomputation choice, and how it
//! is told: a table (`train --plan`), one line (the first of `train`), JSON (`--plan --json`,
//! `bench`), and the error naming what to change when nothing fits.

use gemma4_model::{Gemma4TextConfig, WeightDtype};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AUTO_SHARE, DeviceFacts, Estimate, PlanInput, estimate};
use crate::error::{Result, TrainError};
use crate::recipe::Recompute;

/// The plan of a run on a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub facts: DeviceFacts,
    pub batch: usize,
    pub seq: usize,
    pub dtype: WeightDtype,
    pub rank: usize,
    pub without_recompute: Estimate,
    pub with_recompute: Estimate,
    /// `gradient_checkpointing` as written: `auto`, `true` or `false`.
    pub setting: &'static str,
    /// The choice: recompute layers in the backward pass.
    pub recompute: bool,
    /// When the choice does not fit: changes that would, with their estimates.
    pub hints: Vec<String>,
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// `12.34 GiB`, or `567 MiB` below one GiB.
fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", gib(b))
    } else {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

impl MemoryPlan {
    /// Estimate both ways and choose (`auto`: recomputation only when the estimate without it
    /// passes [`AUTO_SHARE`] of the device's memory; unknown memory: off).
    pub fn new(
        cfg: &Gemma4TextConfig,
        input: &PlanInput,
        facts: &DeviceFacts,
        setting: Recompute,
    ) -> Result<Self> {
        let without = estimate(cfg, input, facts, false)?;
        let with = estimate(cfg, input, facts, true)?;
        let recompute = match setting {
            Recompute::On => true,
            Recompute::Off => false,
            Recompute::Auto => {
                facts.memory.is_some_and(|m| without.total as f64 > AUTO_SHARE * m as f64)
            }
        };
        let mut plan = Self {
            facts: facts.clone(),
            batch: input.batch,
            seq: input.seq,
            dtype: input.dtype,
            rank: input.lora.r,
            without_recompute: without,
            with_recompute: with,
            setting: setting.name(),
            recompute,
            hints: Vec::new(),
        };
        if plan.fits() == Some(false) {
            plan.hints = hints(cfg, input, facts, &plan)?;
        }
        Ok(plan)
    }

    /// The estimate of the chosen way.
    pub fn chosen(&self) -> &Estimate {
        if self.recompute { &self.with_recompute } else { &self.without_recompute }
    }

    /// Whether the chosen way fits the device (`None`: the device reports no memory).
    pub fn fits(&self) -> Option<bool> {
        self.facts.memory.map(|m| self.chosen().total <= m)
    }

    /// An error with the numbers and what to change, when the chosen way does not fit.
    pub fn check(&self) -> Result<()> {
        let (Some(false), Some(m)) = (self.fits(), self.facts.memory) else { return Ok(()) };
        let how = if self.recompute { "with" } else { "without" };
        let mut text = format!(
            "memory plan: a step needs an estimated {:.1} GiB ({how} recomputation) but the {} device holds {:.1} GiB ({}); {}",
            gib(self.chosen().total),
            self.facts.backend,
            gib(m),
            self.facts.memory_source,
            breakdown(self.chosen()),
        );
        if self.hints.is_empty() {
            text += "; no single change of batch, seq, rank or dtype fits: use a larger device";
        } else {
            text += &format!("; to fit, change one of: {}", self.hints.join("; "));
        }
        text += " (see `gemma4-tune train RECIPE --plan`)";
        Err(TrainError::Run(text))
    }

    /// One line: the choices and the peak against the device.
    pub fn summary(&self) -> String {
        let device = match self.facts.memory {
            Some(m) => format!("of {:.1} GiB", gib(m)),
            None => format!("(device memory unknown: {}; not checked)", self.facts.memory_source),
        };
        format!(
            "memory plan: {} · batch {} × seq {} · {} · LoRA r {} · gradient_checkpointing {} ({}) · estimated peak {} {device}",
            self.facts.backend,
            self.batch,
            self.seq,
            self.dtype,
            self.rank,
            self.recompute,
            self.setting,
            size(self.chosen().total)
        )
    }

    /// The table `train --plan` prints.
    pub fn lines(&self) -> Vec<String> {
        let (a, b) = (&self.without_recompute, &self.with_recompute);
        let row = |name: &str, f: fn(&Estimate) -> u64| {
            format!("  {name:<22}{:>16}{:>18}", size(f(a)), size(f(b)))
        };
        let mut out = vec![
            self.summary(),
            format!("  {:<22}{:>16}{:>18}", "", "no recompute", "recompute"),
            row("weights", |e| e.weights),
            row("adapter + optimizer", |e| e.adapter_optimizer),
            row("activations", |e| e.activations),
            row("backward transient", |e| e.backward),
            row("loss chunks", |e| e.loss_chunks),
            row("runtime", |e| e.runtime),
            row("peak", |e| e.total),
        ];
        match (self.fits(), self.facts.memory) {
            (Some(true), Some(m)) => {
                out.push(format!("fits: {} of {}", size(self.chosen().total), size(m)));
            }
            (Some(false), _) => out.extend(self.hints.iter().map(|h| format!("to fit: {h}"))),
            _ => out
                .push(format!("device memory unknown ({}): not checked", self.facts.memory_source)),
        }
        out
    }

    /// The plan as JSON (bytes; `--plan --json`, `bench`).
    pub fn to_json(&self) -> Value {
        json!({
            "backend": self.facts.backend, "device_memory_bytes": self.facts.memory,
            "device_memory_source": self.facts.memory_source,
            "batch": self.batch, "seq": self.seq, "dtype": self.dtype.name(), "rank": self.rank,
            "gradient_checkpointing": {"setting": self.setting, "resolved": self.recompute},
            "without_recompute": self.without_recompute, "with_recompute": self.with_recompute,
            "chosen_total_bytes": self.chosen().total, "fits": self.fits(), "hints": self.hints,
        })
    }
}

fn breakdown(e: &Estimate) -> String {
    format!(
        "weights {:.1}, adapter + optimizer {:.2}, activations {:.1}, backward {:.1}, loss chunks {:.1}, runtime {:.1} GiB",
        gib(e.weights),
        gib(e.adapter_optimizer),
        gib(e.activations),
        gib(e.backward),
        gib(e.loss_chunks),
        gib(e.runtime)
    )
}

/// Single changes that would fit, each with its estimate (recomputation on where it is not).
fn hints(
    cfg: &Gemma4TextConfig,
    input: &PlanInput,
    facts: &DeviceFacts,
    plan: &MemoryPlan,
) -> Result<Vec<String>> {
    let Some(m) = facts.memory else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    if !plan.recompute && plan.with_recompute.total <= m {
        let gb = gib(plan.with_recompute.total);
        out.push(format!("[train] gradient_checkpointing = true or \"auto\" ({gb:.1} GiB)"));
    }
    let mut tries: Vec<(String, PlanInput)> = Vec::new();
    for batch in [input.batch / 2, 1].into_iter().filter(|&b| b >= 1 && b < input.batch) {
        tries.push((format!("[train] batch_size = {batch}"), PlanInput { batch, ..input.clone() }));
    }
    if input.seq >= 4 {
        let seq = input.seq / 2;
        tries.push((format!("[data] max_seq_len = {seq}"), PlanInput { seq, ..input.clone() }));
    }
    if input.lora.r >= 2 {
        let mut lora = input.lora.clone();
        lora.r /= 2;
        tries.push((format!("[lora] r = {}", lora.r), PlanInput { lora, ..input.clone() }));
    }
    if input.dtype == WeightDtype::F32 {
        let dtype = if facts.gpu { facts.auto_dtype() } else { WeightDtype::Bf16 };
        tries.push((format!("[model] dtype = \"{dtype}\""), PlanInput { dtype, ..input.clone() }));
    }
    for (what, t) in tries {
        let recompute = plan.recompute || estimate(cfg, &t, facts, false)?.total > m;
        let e = estimate(cfg, &t, facts, recompute)?;
        if e.total <= m {
            let with = if recompute && !plan.recompute { ", with recomputation" } else { "" };
            out.push(format!("{what} ({:.1} GiB{with})", gib(e.total)));
        }
    }
    Ok(out)
}
