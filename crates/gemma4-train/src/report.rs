//! What a run tells its user, and `metrics.jsonl`. The library prints nothing itself: lines go
//! out as `tracing` events (info; warnings at warn), and the progress of the loop as events of
//! target [`PROGRESS`] (fields `step`, `iters`; a `finish` event at the end), from which the CLI
//! draws its progress bar.
//!
//! Each step's progress says the loss, tokens/s, device memory in use and its peak, and the f16
//! loss scale; each report line adds the learning rate, gradient norm and the time left.

use std::time::Instant;

use burn::tensor::Device;
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

/// Memory `(in use, peak)` in bytes: the device pool of a GPU (in use, and the most it has
/// reserved), or the process's resident set on the CPU (`VmRSS`, `VmHWM`). `None` where neither
/// is reported.
pub fn memory(device: &Device) -> Option<(u64, u64)> {
    if let Some(m) = device.memory_pool_usage() {
        return Some((m.bytes_in_use, m.bytes_reserved));
    }
    process_memory()
}

/// The process's resident set and its peak (`VmRSS`, `VmHWM` of /proc/self/status), in bytes.
pub fn process_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `12.3G`, `850M`.
fn short(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 1.0 { format!("{g:.1}G") } else { format!("{:.0}M", g * 1024.0) }
}

/// `1h02m`, `12m30s`, `45s`.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// One updated step, as the loop reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    /// Target tokens of this step, and of the run so far.
    pub tokens: usize,
    pub trained_tokens: usize,
    /// The f16 loss scale (`None` in f32/bf16).
    pub loss_scale: Option<f64>,
}

/// The loop's reports: progress, the step and validation lines, and their metric records.
pub struct Reporter {
    pub log: MetricsLog,
    iters: usize,
    report_every: usize,
    t0: Instant,
    /// The step this process started after (the ETA counts this process's steps only).
    first: usize,
    /// Target tokens and start of the throughput window (since the last report).
    window: (usize, Instant),
    device: Device,
}

impl Reporter {
    /// Reports of a run of `iters` steps starting after `step` on `device`, a step line every
    /// `report_every`.
    pub fn new(
        log: MetricsLog,
        (step, iters): (usize, usize),
        report_every: usize,
        device: &Device,
    ) -> Self {
        tracing::info!(target: PROGRESS, step, iters, "");
        let now = Instant::now();
        let device = device.clone();
        Self { log, iters, report_every, t0: now, first: step, window: (0, now), device }
    }

    /// An update: progress, and every `report_every` steps a line and a record.
    pub fn updated(&mut self, r: StepReport) -> Result<()> {
        let StepReport { step, lr, loss, grad_norm, tokens, trained_tokens, loss_scale } = r;
        self.window.0 += tokens;
        let tps = self.window.0 as f64 / self.window.1.elapsed().as_secs_f64().max(1e-9);
        let elapsed = self.t0.elapsed().as_secs_f64();
        let eta = elapsed / (step - self.first).max(1) as f64 * (self.iters - step) as f64;
        let mem = memory(&self.device);
        let mut tail = String::new();
        if let Some((now, peak)) = mem {
            tail += &format!(" | mem {} (peak {})", short(now), short(peak));
        }
        if let Some(s) = loss_scale {
            tail += &format!(" | loss_scale {s}");
        }
        let iters = self.iters;
        tracing::info!(target: PROGRESS, step, iters, "loss {loss:.4} | {tps:.0} tok/s{tail}");
        if step.is_multiple_of(self.report_every.max(1)) || step == self.iters {
            say(format_args!(
                "step {step:>5} | loss {loss:.4} | lr {lr:.2e} | grad_norm {grad_norm:.3} | tok/s {tps:.0} | eta {}{tail} | tokens {trained_tokens}",
                duration(eta)
            ));
            let mut rec = train_record(step, loss, lr, grad_norm, tps, trained_tokens, elapsed);
            rec["eta_s"] = eta.into();
            if let Some((now, peak)) = mem {
                (rec["mem_bytes"], rec["mem_peak_bytes"]) = (now.into(), peak.into());
            }
            if let Some(s) = loss_scale {
                rec["loss_scale"] = s.into();
            }
            self.log.record(rec)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(
            [duration(45.4), duration(750.0), duration(3720.0)],
            ["45s", "12m30s", "1h02m"].map(String::from)
        );
        assert_eq!([short(850 << 20), short(12 << 30)], ["850M", "12.0G"].map(String::from));
    }

    #[test]
    fn the_cpu_reports_the_process_resident_set_and_its_peak() {
        let (rss, peak) = memory(&Device::flex()).expect("/proc/self/status on Linux");
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
    }
}
