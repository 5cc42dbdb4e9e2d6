//! A [`MemoryPlan`]: both estimates, the device's memory, the recomputation choice, and how it
//! is told: a table (`train --plan`), one line (the first of `train`), JSON (`--plan --json`,
//! `bench`), and the error naming what to change when nothing fits.

use gemma4_model::{Gemma4TextConfig, WeightDtype};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AUTO_SHARE, DeviceFacts, Estimate, PlanInput, estimate, estimate_layers};
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
    /// `gradient_checkpointing` as written: `auto`, `true`, `false` or a number of layers.
    pub setting: String,
    /// The choice: recompute layers in the backward pass (`recompute_layers > 0`).
    pub recompute: bool,
    /// How many (the first ones) of the model's `layers`.
    pub recompute_layers: usize,
    pub layers: usize,
    /// The estimate of the choice (one of the two above, or between them).
    pub chosen_estimate: Estimate,
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
    /// Estimate both ways and choose (`auto`: the fewest recomputed layers whose estimate stays
    /// within [`AUTO_SHARE`] of the device's memory, none when the run fits without; all when
    /// nothing fits; unknown memory: none).
    pub fn new(
        cfg: &Gemma4TextConfig,
        input: &PlanInput,
        facts: &DeviceFacts,
        setting: Recompute,
    ) -> Result<Self> {
        let without = estimate(cfg, input, facts, false)?;
        let with = estimate(cfg, input, facts, true)?;
        let layers = cfg.layers.len();
        let k = match (setting, facts.memory) {
            (Recompute::Auto, Some(m)) => auto_layers(cfg, input, facts, AUTO_SHARE * m as f64)?,
            _ => setting.layers(layers),
        };
        let chosen_estimate = match k {
            0 => without,
            k if k == layers => with,
            k => estimate_layers(cfg, input, facts, k)?,
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
            recompute: k > 0,
            recompute_layers: k,
            layers,
            chosen_estimate,
            hints: Vec::new(),
        };
        if plan.fits() == Some(false) {
            plan.hints = hints(cfg, input, facts, &plan)?;
        }
        Ok(plan)
    }

    /// The estimate of the chosen way.
    pub fn chosen(&self) -> &Estimate {
        &self.chosen_estimate
    }

    /// The choice as a recipe writes it: `false`, `true` or the number of layers.
    pub fn resolved(&self) -> Recompute {
        Recompute::resolved(self.recompute_layers, self.layers)
    }

    /// `with recomputation`, `without recomputation` or `with recomputation of k of L layers`.
    fn how(&self) -> String {
        match self.recompute_layers {
            0 => "without recomputation".into(),
            k if k >= self.layers => "with recomputation".into(),
            k => format!("with recomputation of {k} of {} layers", self.layers),
        }
    }

    /// Whether the chosen way fits the device (`None`: the device reports no memory).
    pub fn fits(&self) -> Option<bool> {
        self.facts.memory.map(|m| self.chosen().total <= m)
    }

    /// An error with the numbers and what to change, when the chosen way does not fit.
    pub fn check(&self) -> Result<()> {
        let (Some(false), Some(m)) = (self.fits(), self.facts.memory) else { return Ok(()) };
        let mut text = format!(
            "memory plan: a step needs an estimated {:.1} GiB ({}) but the {} device holds {:.1} GiB ({}); {}",
            gib(self.chosen().total),
            self.how(),
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
            self.resolved().name(),
            self.setting,
            size(self.chosen().total)
        )
    }

    /// The table `train --plan` prints.
    pub fn lines(&self) -> Vec<String> {
        let partial = self.recompute_layers > 0 && self.recompute_layers < self.layers;
        let mut columns = vec![&self.without_recompute, &self.with_recompute];
        let mut head = format!("  {:<22}{:>16}{:>18}", "", "no recompute", "recompute");
        if partial {
            columns.push(&self.chosen_estimate);
            head += &format!("{:>18}", format!("first {}", self.recompute_layers));
        }
        let row = |name: &str, f: fn(&Estimate) -> u64| {
            let mut line = format!("  {name:<22}{:>16}", size(f(columns[0])));
            for e in &columns[1..] {
                line += &format!("{:>18}", size(f(e)));
            }
            line
        };
        let mut out = vec![
            self.summary(),
            head,
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
                out.push(format!(
                    "fits: {} of {} ({})",
                    size(self.chosen().total),
                    size(m),
                    self.how()
                ));
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
            "gradient_checkpointing": {"setting": self.setting, "resolved": self.resolved(),
                "recompute_layers": self.recompute_layers, "layers": self.layers},
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

/// The fewest layers to recompute (the first ones) for an estimate within `limit` bytes: 0 when
/// the run fits without, all of them when nothing fits.
fn auto_layers(
    cfg: &Gemma4TextConfig,
    input: &PlanInput,
    facts: &DeviceFacts,
    limit: f64,
) -> Result<usize> {
    let n = cfg.layers.len();
    for k in 0..n {
        if estimate_layers(cfg, input, facts, k)?.total as f64 <= limit {
            return Ok(k);
        }
    }
    Ok(n)
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
    if plan.recompute_layers < plan.layers && plan.with_recompute.total <= m {
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
