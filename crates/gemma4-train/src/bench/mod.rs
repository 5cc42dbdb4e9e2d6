//! `bench`: time LoRA training steps, prefill and decode of a random-weight model with real
//! shapes, through the same code as `train` (one [`step`](crate::step)) and `generate`
//! (`forward_cached` + the head). Prints and returns one JSON report; its keys are those of the
//! peer baseline `tests/reference/bench_peft.py` (transformers + PEFT), so both compare line by line.
//!
//! ```text
//! model  = random weights for the preset's config (same loader, same weight table)
//! train  : warm-up steps, then timed steps  (forward, chunked CE, backward, clip, AdamW; synced)
//! prefill: forward over [batch, seq] without gradients, head on the last position
//! decode : a prompt into the KV cache, then greedy single-token steps (timed)
//! memory : the device memory pool after each phase (peak of bytes reserved / in use)
//! ```

pub mod ceilings;
pub mod flops;

pub use ceilings::ceilings;

use std::path::Path;
use std::time::Instant;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gemma4_data::Batch;
use gemma4_lora::{LoraAdapter, LoraConfig, TargetModules};
use gemma4_model::{Adapter, Checkpoint, Gemma4TextConfig, Gemma4TextModel, KvCache, LoadOptions, RandomInit, TokenBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::error::{Result, TrainError};
use crate::optim::{AdamW, LossScale, global_norm};
use crate::recipe::OptimSection;
use crate::step::{Phases, accumulate_gradients, apply_update};

pub use flops::Flops;

/// The built-in presets: HF text configs with the real shapes (random weights).
pub const PRESETS: [(&str, &str); 5] = [
    ("tiny", include_str!("../../presets/tiny.json")),
    ("e2b", include_str!("../../presets/e2b.json")),
    ("e4b", include_str!("../../presets/e4b.json")),
    ("26b-a4b", include_str!("../../presets/26b-a4b.json")),
    ("31b", include_str!("../../presets/31b.json")),
];

/// What to measure (the knobs of a recipe that matter for speed).
#[derive(Clone, Debug)]
pub struct BenchSettings {
    /// A preset name (see [`PRESETS`]) or a path to a `config.json` (or a directory holding one).
    pub model: String,
    pub batch: usize,
    pub seq: usize,
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub dtype: DType,
    /// Largest device buffer one weight occupies ([`LoadOptions::piece_bytes`]).
    pub piece_bytes: usize,
    pub gradient_checkpointing: bool,
    pub warmup: usize,
    pub steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Train on the same batch every step (a loss that falls: precision-tracking runs), not a
    /// fresh random batch each step (a flat loss near ln(vocab)).
    pub repeat_batch: bool,
    /// Prefill runs timed (0 = skip).
    pub prefill_runs: usize,
    /// Decode: prompt length, new tokens (0 = skip), rows.
    pub prompt: usize,
    pub decode_tokens: usize,
    pub decode_batch: usize,
    pub seed: u64,
    /// Time the phases of each step (syncing the device between them).
    pub profile: bool,
    /// Written into the report (e.g. `vulkan`).
    pub backend: String,
}

impl Default for BenchSettings {
    fn default() -> Self {
        Self {
            model: "e2b".into(),
            batch: 4,
            seq: 2048,
            rank: 16,
            alpha: 32.0,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
            dtype: DType::F32,
            piece_bytes: gemma4_model::MAX_PIECE_BYTES,
            gradient_checkpointing: false,
            warmup: 2,
            steps: 5,
            lr: 1e-4,
            repeat_batch: false,
            prefill_runs: 3,
            prompt: 128,
            decode_tokens: 64,
            decode_batch: 4,
            seed: 0,
            profile: false,
            backend: String::new(),
        }
    }
}

/// The config of a preset name or a config path.
pub fn load_config(model: &str) -> Result<Gemma4TextConfig> {
    let loaded = match PRESETS.iter().find(|(name, _)| *name == model) {
        Some((_, text)) => {
            let json: Value = serde_json::from_str(text).map_err(|e| TrainError::Run(format!("preset {model}: {e}")))?;
            Gemma4TextConfig::from_json(&json)?
        }
        None if Path::new(model).exists() => Gemma4TextModel::config_at(Path::new(model))?,
        None => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(TrainError::Run(format!("bench: `{model}` is neither a preset ({}) nor an existing config path", names.join(", "))));
        }
    };
    Ok(loaded.config)
}

/// Device memory pool `(bytes in use, bytes reserved)`, where the backend reports it.
fn memory(device: &Device) -> Option<(u64, u64)> {
    device.memory_pool_usage().map(|m| (m.bytes_in_use, m.bytes_reserved))
}

fn mem_text(m: Option<(u64, u64)>) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    m.map_or("memory n/a".into(), |(u, r)| format!("{:.2} GiB in use, {:.2} GiB reserved", gib(u), gib(r)))
}

/// Running peaks of the sampled pool.
#[derive(Default)]
struct Peaks(Option<(u64, u64)>);

impl Peaks {
    fn sample(&mut self, device: &Device) {
        if let Some((used, reserved)) = memory(device) {
            let (u, r) = self.0.unwrap_or((0, 0));
            self.0 = Some((u.max(used), r.max(reserved)));
        }
    }
}

/// A batch of uniform random tokens, every token after the first trained.
fn random_batch(rng: &mut ChaCha8Rng, batch: usize, seq: usize, vocab: usize) -> Batch {
    let ids: Vec<u32> = (0..batch * seq).map(|_| rng.random_range(0..vocab as u32)).collect();
    let target: Vec<bool> = (0..batch * seq).map(|i| i % seq != 0).collect();
    Batch {
        ids,
        target,
        batch,
        seq,
        attention_mask: vec![true; batch * seq],
        segments: None,
        positions: None,
        target_tokens: batch * (seq - 1),
        lines: Vec::new(),
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Run the benchmark on `device` (a plain device: the autodiff one is derived here).
pub fn run(s: &BenchSettings, device: &Device) -> Result<Value> {
    if s.batch == 0 || s.seq < 2 || s.rank == 0 {
        return Err(TrainError::Run("bench: batch ≥ 1, seq ≥ 2 and rank ≥ 1 are required".into()));
    }
    let cfg = load_config(&s.model)?;
    let train_device = device.clone().autodiff();
    let mut peaks = Peaks::default();
    let t = Instant::now();
    let ckpt = Checkpoint::random(&cfg, RandomInit { seed: s.seed, std: 0.02 });
    let options = LoadOptions::new(s.dtype).with_piece_bytes(s.piece_bytes);
    let (model, _) = Gemma4TextModel::load_with(cfg.clone(), &ckpt, &train_device, options)?;
    device.sync().map_err(|e| TrainError::Run(format!("device: {e:?}")))?;
    let load_s = secs(t);
    let weights_mem = memory(device);
    eprintln!("bench: {} loaded in {load_s:.1} s ({})", s.model, mem_text(weights_mem));
    let mut lora = LoraConfig::new(s.rank, s.alpha, TargetModules::List(s.targets.clone()));
    lora.base_model_name_or_path = Some(s.model.clone());
    let mut adapter = gemma4_lora::init_adapter(&model, &lora, s.seed)?;
    // A benchmark adapter starts with non-zero B, so every LoRA product is real work.
    adapter.map_tensors(|key, t| if key.contains("lora_B") { t.ones_like().mul_scalar(1e-3) } else { t });
    adapter.map_tensors(|_, t| t.autodiff().require_grad());
    let flops = Flops::new(&cfg, s.seq, &adapter);
    let params = gemma4_model::ParamCounts::from_config(&cfg);

    // Training steps.
    let optim = OptimSection { lr: s.lr, weight_decay: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8, max_grad_norm: 1.0 };
    let mut opt = AdamW::default();
    let mut loss_scale = LossScale::new(s.dtype);
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    let mut phase_sums: Vec<(&'static str, f64)> = Vec::new();
    let mut skipped = 0usize;
    let first = random_batch(&mut rng, s.batch, s.seq, cfg.vocab_size);
    for i in 0..s.warmup + s.steps {
        let batch = if s.repeat_batch || i == 0 { first.clone() } else { random_batch(&mut rng, s.batch, s.seq, cfg.vocab_size) };
        let tokens = batch.target_tokens;
        let mut phases = if s.profile { Phases::on(device) } else { Phases::off() };
        let t = Instant::now();
        let (loss_sum, grads) = accumulate_gradients(&model, &mut adapter, std::slice::from_ref(&batch), tokens, &train_device, s.seed ^ i as u64, s.gradient_checkpointing, loss_scale.scale, &mut phases)?;
        match loss_scale.unscale(global_norm(&grads), optim.max_grad_norm) {
            Some((norm, _)) if !norm.is_finite() => return Err(TrainError::Run(format!("bench step {}: non-finite gradients (norm {norm})", i + 1))),
            Some((_, factor)) => apply_update(&mut adapter, &mut opt, &optim, optim.lr, grads, factor),
            None => {
                let bad = crate::optim::nonfinite_keys(&grads);
                eprintln!("bench: f16 gradient overflow in {} of {} tensors (first: {}); step skipped, loss scale now {}", bad.len(), grads.len(), bad.first().map_or("-", |k| k.as_str()), loss_scale.scale);
                skipped += usize::from(i >= s.warmup);
            }
        }
        device.sync().map_err(|e| TrainError::Run(format!("device: {e:?}")))?;
        let dt = secs(t);
        phases.mark("clip + optimizer");
        if !phases.times.is_empty() {
            eprintln!("bench:   {}", phases.times.iter().map(|(n, t)| format!("{n} {t:.3} s")).collect::<Vec<_>>().join(", "));
        }
        if i >= s.warmup {
            for (k, (name, t)) in phases.times.iter().enumerate() {
                match phase_sums.get_mut(k) {
                    Some(p) => p.1 += t,
                    None => phase_sums.push((name, *t)),
                }
            }
        }
        peaks.sample(device);
        let loss = loss_sum / tokens as f64;
        eprintln!("bench: step {}/{} {:.3} s, loss {loss:.4}, {}{}", i + 1, s.warmup + s.steps, dt, mem_text(memory(device)), if i < s.warmup { " (warm-up)" } else { "" });
        if i >= s.warmup {
            times.push(dt);
            losses.push(loss);
        }
    }
    let train_tokens = (s.batch * s.seq) as f64;
    let step_s = mean(&times);
    let train = json!({
        "step_s": step_s, "step_s_all": times, "tokens_per_s": train_tokens / step_s,
        "tflops": flops.train() * train_tokens / step_s / 1e12,
        "loss_first": losses.first(), "loss_last": losses.last(), "loss_all": losses,
        "skipped_steps": skipped, "loss_scale": loss_scale.scale,
        "phases_s": (!phase_sums.is_empty()).then(|| phase_sums.iter().map(|(n, t)| (n.to_string(), json!(t / times.len().max(1) as f64))).collect::<serde_json::Map<_, _>>()),
    });
    let train_peak = peaks.0;

    // Inference: the adapter's tensors off the tape.
    let mut frozen: LoraAdapter = adapter.clone();
    frozen.map_tensors(|_, t| t.without_autodiff());
    let prefill = (s.prefill_runs > 0).then(|| prefill(&model, &frozen, s, &mut rng, device, &flops, &mut peaks)).transpose()?;
    let decode = (s.decode_tokens > 0).then(|| decode(&model, &frozen, s, &mut rng, device, &mut peaks)).transpose()?;

    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Ok(json!({
        "tool": "gemma4-tune",
        "versions": {"gemma4-tune": env!("CARGO_PKG_VERSION"), "burn": "0.22.1"},
        "device": s.backend,
        "preset": s.model,
        "settings": {
            "batch": s.batch, "seq": s.seq, "rank": s.rank, "alpha": s.alpha, "targets": s.targets,
            "dtype": format!("{:?}", s.dtype).to_lowercase(), "gradient_checkpointing": s.gradient_checkpointing,
            "warmup": s.warmup, "steps": s.steps, "lr": s.lr, "repeat_batch": s.repeat_batch, "attn": "gemma4-tune",
        },
        "params": {"total": params.total, "trainable": adapter.num_params()},
        "flops_per_token": {"forward": flops.forward(), "train": flops.train(), "prefill": flops.prefill()},
        "load_s": load_s,
        "weight_piece_bytes": model.piece_bytes(),
        "train": train,
        "prefill": prefill,
        "decode": decode,
        "memory": {
            "peak_allocated_bytes": train_peak.map(|p| p.0),
            "peak_reserved_bytes": train_peak.map(|p| p.1),
            "peak_gib": train_peak.map(|p| gib(p.1)),
            "weights_reserved_bytes": weights_mem.map(|m| m.1),
            "method": "Burn device memory pool after each training step (reserved = what the process holds on the device)",
        },
    }))
}

/// Forward-only passes over `[batch, seq]`, head on the last position.
fn prefill(model: &Gemma4TextModel, adapter: &dyn Adapter, s: &BenchSettings, rng: &mut ChaCha8Rng, device: &Device, flops: &Flops, peaks: &mut Peaks) -> Result<Value> {
    let mut times = Vec::new();
    for i in 0..=s.prefill_runs {
        let b = random_batch(rng, s.batch, s.seq, model.config.vocab_size);
        let t = Instant::now();
        let hidden = model.forward_hidden(&TokenBatch::new(b.ids, s.batch, s.seq), adapter, false)?.hidden;
        let last = model.logits(hidden.narrow(1, s.seq - 1, 1)).argmax(2);
        let _ = last.into_data();
        peaks.sample(device);
        if i > 0 {
            times.push(secs(t)); // the first run warms up
        }
    }
    let (tokens, time) = ((s.batch * s.seq) as f64, mean(&times));
    Ok(json!({"tokens": tokens, "time_s": time, "tokens_per_s": tokens / time, "tflops": flops.prefill() * tokens / time / 1e12}))
}

/// A prompt into the KV cache, then greedy single-token steps (the `generate` path).
fn decode(model: &Gemma4TextModel, adapter: &dyn Adapter, s: &BenchSettings, rng: &mut ChaCha8Rng, device: &Device, peaks: &mut Peaks) -> Result<Value> {
    let (b, vocab) = (s.decode_batch, model.config.vocab_size);
    let mut cache = KvCache::new(&model.config);
    let prompt = random_batch(rng, b, s.prompt.max(1), vocab);
    let hidden = model.forward_cached(&TokenBatch::new(prompt.ids, b, s.prompt.max(1)), &mut cache, adapter)?;
    let mut next = greedy(model, hidden)?;
    for _ in 0..4 {
        // Warm-up steps (kernel compilation and autotuning); the cache keeps growing as in real use.
        let hidden = model.forward_cached(&TokenBatch::new(next, b, 1), &mut cache, adapter)?;
        next = greedy(model, hidden)?;
    }
    let t = Instant::now();
    for _ in 0..s.decode_tokens {
        let hidden = model.forward_cached(&TokenBatch::new(next, b, 1), &mut cache, adapter)?;
        next = greedy(model, hidden)?;
    }
    let time = secs(t);
    peaks.sample(device);
    let tokens = (b * s.decode_tokens) as f64;
    Ok(json!({"batch": b, "prompt": s.prompt, "new_tokens": s.decode_tokens, "time_s": time, "tokens_per_s": tokens / time}))
}

/// The argmax token of each row's last position (read back: one sync per decode step).
fn greedy(model: &Gemma4TextModel, hidden: Tensor<3>) -> Result<Vec<u32>> {
    let [_, n, _] = hidden.dims();
    let ids: Tensor<3, Int> = model.logits(hidden.narrow(1, n - 1, 1)).argmax(2);
    let data: TensorData = ids.into_data();
    let values = data.try_to_vec_as::<i64>().map_err(|e| TrainError::Run(format!("decode: {e:?}")))?;
    Ok(values.into_iter().map(|v| v as u32).collect())
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
        if r["settings"]["gradient_checkpointing"].as_bool() == Some(true) { " +checkpointing" } else { "" },
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
        out += &format!("prefill {} tok/s | {} TFLOP/s\n", f(&r["prefill"]["tokens_per_s"]), f(&r["prefill"]["tflops"]));
    }
    if !r["decode"].is_null() {
        out += &format!("decode  {} tok/s (batch {})\n", f(&r["decode"]["tokens_per_s"]), r["decode"]["batch"]);
    }
    out += &format!("memory  peak {} GiB", r["memory"]["peak_gib"].as_f64().map_or("n/a".into(), |x| format!("{x:.2}")));
    out
}
