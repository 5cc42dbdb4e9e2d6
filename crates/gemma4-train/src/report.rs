//! What a run tells its user, and `metrics.jsonl`. The library prints nothing itself: lines go
//! out as `tracing` events (info; warnings at warn), and the progress of the loop as events of
//! target [`PROGRESS`] (fields `step`, `iters`; a `finish` event at the end), from which the CLI
//! draws its progress bar.

use std::time::Instant;

use serde_json::json;

use crate::error::Result;
use crate::metrics::{MetricsLog, train_record};

/// The `tracing` target of progress events.
pub const PROGRESS: &str = "gemma4_train::progress";

/// One line for the user (the CLI prints it on stdout, above the progress bar).
pub fn say(line: impl std::fmt::Display) {
    tracing::info!("{line}");
}

/// A warning (the CLI prints it on stderr as `warning: …`).
pub fn warn(line: impl std::fmt::Display) {
    tracing::warn!("{line}");
}

/// The loop's reports: progress, the step and validation lines, and their metric records.
pub struct Reporter {
    pub log: MetricsLog,
    iters: usize,
    report_every: usize,
    t0: Instant,
    /// Target tokens and start of the throughput window (since the last report).
    window: (usize, Instant),
}

impl Reporter {
    /// Reports of a run of `iters` steps starting after `step`, a step line every `report_every`.
    pub fn new(log: MetricsLog, step: usize, iters: usize, report_every: usize) -> Self {
        tracing::info!(target: PROGRESS, step, iters, "");
        Self { log, iters, report_every, t0: Instant::now(), window: (0, Instant::now()) }
    }

    /// An update at `step`: progress, and every `report_every` steps a line and a record.
    pub fn updated(
        &mut self,
        step: usize,
        lr: f64,
        loss: f64,
        grad_norm: f64,
        trained: (usize, usize),
    ) -> Result<()> {
        let (tokens, trained_tokens) = trained;
        self.window.0 += tokens;
        let tps = self.window.0 as f64 / self.window.1.elapsed().as_secs_f64().max(1e-9);
        let iters = self.iters;
        tracing::info!(target: PROGRESS, step, iters, "loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s");
        if step.is_multiple_of(self.report_every.max(1)) || step == self.iters {
            say(format_args!(
                "step {step:>5} | loss {loss:.4} | lr {lr:.2e} | grad_norm {grad_norm:.3} | tok/s {tps:.0} | tokens {trained_tokens}"
            ));
            let elapsed = self.t0.elapsed().as_secs_f64();
            self.log.record(train_record(
                step,
                loss,
                lr,
                grad_norm,
                tps,
                trained_tokens,
                elapsed,
            ))?;
            self.window = (0, Instant::now());
        }
        Ok(())
    }

    /// A validation loss at `step`.
    pub fn validation(&mut self, step: usize, val: f64) -> Result<()> {
        say(format_args!("step {step:>5} | val_loss {val:.4} | val_ppl {:.2}", val.exp()));
        self.log.record(json!({"step": step, "val_loss": val, "val_ppl": val.exp()}))
    }

    /// The loop is over (the CLI clears its bar).
    pub fn finish(&self) {
        tracing::info!(target: PROGRESS, finish = true, "");
    }
}
