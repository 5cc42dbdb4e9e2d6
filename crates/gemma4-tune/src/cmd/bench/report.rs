//! The bench report's helpers: device memory (sampled peaks) and the human-readable summary
//! printed before the JSON.

use burn::tensor::Device;
use serde_json::Value;

/// Device memory pool `(bytes in use, bytes reserved)`; on the CPU backend the process's
/// resident set and its peak (`VmRSS`, `VmHWM`), what the memory plan is checked against there.
pub fn memory(device: &Device) -> Option<(u64, u64)> {
    gemma4_train::report::memory(device)
}

/// `memory` in GiB, for the progress lines.
pub fn mem_text(m: Option<(u64, u64)>) -> String {
    m.map_or("memory n/a".into(), |(u, r)| {
        format!("{:.2} GiB in use, {:.2} GiB reserved", gib(u), gib(r))
    })
}

/// Bytes in GiB.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Running peaks `(in use, reserved)` of a device's sampled pool.
pub struct Peaks {
    device: Device,
    pub peak: Option<(u64, u64)>,
}

impl Peaks {
    /// No samples yet of `device`'s pool.
    pub fn new(device: &Device) -> Self {
        Self { device: device.clone(), peak: None }
    }

    /// Sample the pool now.
    pub fn sample(&mut self) {
        if let Some((used, reserved)) = memory(&self.device) {
            let (u, r) = self.peak.unwrap_or((0, 0));
            self.peak = Some((u.max(used), r.max(reserved)));
        }
    }
}

/// A short human-readable summary of a report (ours or the baseline's).
pub fn summary(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let mut out = format!(
        "{} on {} | {} | batch {} seq {} r {} {}{}\n",
        r["tool"].as_str().unwrap_or("?"),
        r["device"].as_str().unwrap_or("?"),
        r["preset"].as_str().unwrap_or("?"),
        r["settings"]["batch"],
        r["settings"]["seq"],
        r["settings"]["rank"],
        r["settings"]["dtype"].as_str().unwrap_or("?"),
        match &r["settings"]["gradient_checkpointing"] {
            Value::Bool(true) => " +checkpointing".to_string(),
            Value::Number(n) => format!(" +checkpointing of {n} layers"),
            _ => String::new(),
        },
    );
    out += &format!(
        "train   {} tok/s | step {} ms | {} TFLOP/s | loss {} → {}\n",
        f(&r["train"]["tokens_per_s"]),
        r["train"]["step_s"].as_f64().map_or("-".into(), |x| format!("{:.1}", x * 1e3)),
        f(&r["train"]["tflops"]),
        r["train"]["loss_first"].as_f64().map_or("-".into(), |x| format!("{x:.4}")),
        r["train"]["loss_last"].as_f64().map_or("-".into(), |x| format!("{x:.4}")),
    );
    if !r["prefill"].is_null() {
        out += &format!(
            "prefill {} tok/s | {} TFLOP/s\n",
            f(&r["prefill"]["tokens_per_s"]),
            f(&r["prefill"]["tflops"])
        );
    }
    if !r["decode"].is_null() {
        out += &format!(
            "decode  {} tok/s (batch {})\n",
            f(&r["decode"]["tokens_per_s"]),
            r["decode"]["batch"]
        );
    }
    out += &format!(
        "memory  peak {} GiB",
        r["memory"]["peak_gib"].as_f64().map_or("n/a".into(), |x| format!("{x:.2}"))
    );
    if let (Some(plan), Some(err)) =
        (r["memory"]["plan_pool_bytes"].as_f64(), r["memory"]["plan_error"].as_f64())
    {
        out += &format!(" (plan {:.2} GiB, {:+.1}%)", plan / (1u64 << 30) as f64, 100.0 * err);
    }
    out
}
