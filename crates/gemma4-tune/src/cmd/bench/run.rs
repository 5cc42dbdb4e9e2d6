//! `bench`: time LoRA training steps, prefill and decode of a random-weight model with real
//! shapes, through the same code as `train` ([`Trainer::step`]) and `generate`
//! (gemma4-generate's [`Decoder`](gemma4_generate::Decoder)). Returns one JSON report; its keys
//! are those of the peer baseline `tests/reference/bench_peft.py` (transformers + PEFT), so both
//! compare line by line.
//!
//! ```text
//! model  = random weights for the preset's config (same loader, same weight table)
//! train  : warm-up steps, then timed steps  (forward, chunked CE, backward, clip, AdamW; synced)
//! prefill: forward over [batch, seq] without gradients, head on the last position
//! decode : a prompt into the KV cache, then greedy single-token steps (timed)
//! memory : the device memory pool after each phase (peak of bytes reserved / in use)
//! ```

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device};
use gemma4_data::Batch;
use gemma4_lora::{LoraAdapter, LoraConfig, TargetModules};
use gemma4_model::{Checkpoint, Gemma4TextConfig, Gemma4TextModel, LoadOptions, RandomInit};
use gemma4_train::checkpoint::TrainerState;
use gemma4_train::optim::AdamW;
use gemma4_train::recipe::{OptimSection, Recompute};
use gemma4_train::{StepSettings, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::flops::Flops;
use super::infer::{decode, prefill};
use super::report::{Peaks, gib, mem_text, memory};
use super::train::train_steps;

/// The built-in presets: HF text configs with the real shapes (random weights).
pub const PRESETS: [(&str, &str); 5] = [
    ("tiny", include_str!("../../../presets/tiny.json")),
    ("e2b", include_str!("../../../presets/e2b.json")),
    ("e4b", include_str!("../../../presets/e4b.json")),
    ("26b-a4b", include_str!("../../../presets/26b-a4b.json")),
    ("31b", include_str!("../../../presets/31b.json")),
];

/// The default LoRA targets.
const TARGETS: [&str; 7] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

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
    /// Layers recomputed in the backward pass (`true`: all; a number: the first ones).
    pub gradient_checkpointing: Recompute,
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
            targets: TARGETS.map(String::from).to_vec(),
            dtype: DType::F32,
            piece_bytes: gemma4_model::MAX_PIECE_BYTES,
            gradient_checkpointing: Recompute::Off,
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
            let json: Value =
                serde_json::from_str(text).with_context(|| format!("preset {model}"))?;
            Gemma4TextConfig::from_json(&json)?
        }
        None if Path::new(model).exists() => Gemma4TextModel::config_at(Path::new(model))?,
        None => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            bail!(
                "bench: `{model}` is neither a preset ({}) nor an existing config path",
                names.join(", ")
            );
        }
    };
    Ok(loaded.config)
}

/// A batch of uniform random tokens, every token after the first trained.
pub fn random_batch(rng: &mut ChaCha8Rng, batch: usize, seq: usize, vocab: usize) -> Batch {
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

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// The mean of `v` (0 when empty).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Wait for the device to finish its queued work.
pub fn sync(device: &Device) -> Result<()> {
    device.sync().map_err(|e| anyhow::anyhow!("device: {e:?}"))
}

/// Run the benchmark on `device` (a plain device: the autodiff one is derived here).
pub fn run(s: &BenchSettings, device: &Device) -> Result<Value> {
    if s.batch == 0 || s.seq < 2 || s.rank == 0 {
        bail!("bench: batch ≥ 1, seq ≥ 2 and rank ≥ 1 are required");
    }
    let cfg = load_config(&s.model)?;
    let mut peaks = Peaks::new(device);
    let t = Instant::now();
    let ckpt = Checkpoint::random(&cfg, RandomInit { seed: s.seed, std: 0.02 });
    let options = LoadOptions::new(s.dtype).with_piece_bytes(s.piece_bytes);
    let (model, _) =
        Gemma4TextModel::load_with(cfg.clone(), &ckpt, &device.clone().autodiff(), options)?;
    sync(device)?;
    let load_s = secs(t);
    let weights_mem = memory(device);
    eprintln!("bench: {} loaded in {load_s:.1} s ({})", s.model, mem_text(weights_mem));
    let mut trainer = trainer(model, s)?;
    let flops = Flops::new(&cfg, s.seq, &trainer.adapter);
    let params = gemma4_model::ParamCounts::from_config(&cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let train = train_steps(&mut trainer, s, &mut rng, &flops, &mut peaks, device)?;
    let train_peak = peaks.peak;

    // Inference: the adapter's tensors off the tape.
    let mut frozen: LoraAdapter = trainer.adapter.clone();
    frozen.map_tensors(|_, t| t.without_autodiff());
    let model = &trainer.model;
    let prefill = (s.prefill_runs > 0)
        .then(|| prefill(model, &frozen, s, &mut rng, &flops, &mut peaks))
        .transpose()?;
    let decode = (s.decode_tokens > 0)
        .then(|| decode(model, &frozen, s, &mut rng, &mut peaks))
        .transpose()?;

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
        "params": {"total": params.total, "trainable": trainer.adapter.num_params()},
        "flops_per_token": {"forward": flops.forward(), "train": flops.train(), "prefill": flops.prefill()},
        "load_s": load_s,
        "weight_piece_bytes": model.piece_bytes(),
        "train": train,
        "prefill": prefill,
        "decode": decode,
        // Which of the project's opt-in kernels ran (launches in this process).
        "kernels": {
            "tile_matmul": gemma4_kernels::fused::tile_matmul_launches(),
            "flash_tensor_cores": gemma4_kernels::fused::flash_tensor_core_launches(),
            "tall_products": gemma4_kernels::fused::tall_launches(),
        },
        "memory": {
            "peak_allocated_bytes": train_peak.map(|p| p.0),
            "peak_reserved_bytes": train_peak.map(|p| p.1),
            "peak_gib": train_peak.map(|p| gib(p.1)),
            "weights_reserved_bytes": weights_mem.map(|m| m.1),
            "method": "Burn device memory pool after each training step (reserved = what the process holds on the device); CPU backend: the process's resident set (allocated = VmRSS, reserved = VmHWM, its peak)",
        },
    }))
}

/// The trainer of the benchmark: a LoRA adapter as the settings say, AdamW without weight
/// decay, the gradient clipped to 1, no skipping of non-finite steps.
fn trainer(model: Gemma4TextModel, s: &BenchSettings) -> Result<Trainer> {
    let mut lora = LoraConfig::new(s.rank, s.alpha, TargetModules::List(s.targets.clone()));
    lora.base_model_name_or_path = Some(s.model.clone());
    let mut adapter = gemma4_lora::init_adapter(&model, &lora, s.seed)?;
    // A benchmark adapter starts with non-zero B, so every LoRA product is real work.
    adapter.map_tensors(
        |key, t| {
            if key.contains("lora_B") { t.ones_like().mul_scalar(1e-3) } else { t }
        },
    );
    let optim = OptimSection {
        lr: s.lr,
        weight_decay: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        max_grad_norm: 1.0,
    };
    let settings = StepSettings {
        optim,
        gradient_checkpointing: s.gradient_checkpointing,
        skip_nonfinite: false,
        seed: s.seed,
    };
    let mut trainer =
        Trainer::new(model, adapter, AdamW::default(), TrainerState::default(), settings);
    trainer.profile = s.profile;
    Ok(trainer)
}
