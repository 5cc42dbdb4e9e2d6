//! `gemma4-tune bench [--model e2b|e4b|26b-a4b|31b|tiny|CONFIG] [--batch 4] [--seq 2048] ...`
//!
//! Times LoRA training steps, prefill and decode on a random-weight model with the preset's real
//! shapes; prints a summary and the JSON report (also written with `--json`). The peer baseline
//! with the same knobs and JSON: `python3 tests/reference/bench_peft.py` (see docs/performance.md).
//!
//! Files: `run` (settings, presets, the report), `train` (the timed [`Trainer`] steps), `infer`
//! (prefill, decode), `ceilings` (`--ceilings`), `flops` (FLOPs per token), `report` (memory,
//! summary). The presets' configs are in `crates/gemma4-tune/presets/`.
//!
//! [`Trainer`]: gemma4_train::Trainer

mod ceilings;
mod flops;
mod fused;
mod infer;
mod kernels;
mod report;
mod run;
mod train;

use std::path::PathBuf;

use anyhow::Result;
use gemma4_lora::{LoraConfig, TargetModules};
use gemma4_model::WeightDtype;
use gemma4_train::plan::{DeviceFacts, MemoryPlan, PlanInput};
use gemma4_train::recipe::Recompute;

use self::report::summary;
use self::run::{BenchSettings, load_config, run};

use crate::backend::{self, Backend};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Preset (tiny, e2b, e4b, 26b-a4b, 31b) or a config.json path.
    #[arg(long, default_value = "e2b")]
    model: String,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 2048)]
    seq: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// LoRA alpha (default 2 × rank).
    #[arg(long)]
    alpha: Option<f64>,
    /// Target modules, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    targets: Vec<String>,
    /// Base weight and activation dtype (LoRA, optimizer, norms and loss stay f32).
    #[arg(long, default_value = "f16", value_parser = backend::dtype_parser())]
    dtype: WeightDtype,
    /// Recompute activations in the backward pass (less memory).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Recompute only the first N decoder layers, keeping the rest on the tape (between
    /// `--gradient-checkpointing` and none; a recipe's `gradient_checkpointing = N`).
    #[arg(long, conflicts_with = "gradient_checkpointing")]
    recompute_layers: Option<usize>,
    /// Untimed steps first; under f16 the warm-up goes on until a step updates (an overflowing
    /// step halves the loss scale and updates nothing), at most 16 more, so timed steps update.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Train on one batch every step (its loss falls: for comparing dtypes), not a fresh one.
    #[arg(long)]
    repeat_batch: bool,
    /// Timed prefill runs (0: skip).
    #[arg(long, default_value_t = 3)]
    prefill_runs: usize,
    /// Decode: new tokens (0: skip), prompt length, rows (default: --batch).
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    #[arg(long, default_value_t = 128)]
    prompt: usize,
    #[arg(long)]
    decode_batch: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute backend: `auto` takes a CUDA device, else a GPU through wgpu (Vulkan, Metal),
    /// else the CPU, and says which.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "GEMMA4_TUNE_BACKEND")]
    backend: Backend,
    /// Time the phases of each step (forward, loss, backward, optimizer; syncs between them).
    #[arg(long)]
    profile: bool,
    /// Measure the device's ceilings instead: matmuls (8192³, the preset's projection and head
    /// shapes) and one attention layer of each type (forward, and forward + backward).
    #[arg(long)]
    ceilings: bool,
    /// Check the kernels instead: gemma4-kernels' products (cuBLAS on CUDA) and Burn's matmul
    /// against f64 on every product shape of --model, and the fused kernels (RMSNorm) against
    /// their plain-op reference, forward and backward, over --batch × --seq rows (at most 4096);
    /// exits non-zero when one is out of tolerance.
    #[arg(long, conflicts_with = "ceilings")]
    check_kernels: bool,
    /// Print the memory plan for these settings as JSON (what `train --plan --json` prints:
    /// the estimated peak with and without recomputation) and exit without running. A run's
    /// report holds it too (`plan`, and `memory.plan_pool_bytes` beside the measured peak).
    #[arg(long, conflicts_with_all = ["ceilings", "check_kernels"])]
    plan: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run_cmd(args: Args) -> Result<()> {
    let opened = backend::open(args.backend)?;
    let (device, piece_bytes) = (opened.device.clone(), opened.piece_bytes);
    let settings = BenchSettings {
        model: args.model,
        batch: args.batch,
        seq: args.seq,
        rank: args.rank,
        alpha: args.alpha.unwrap_or(2.0 * args.rank as f64),
        targets: args.targets,
        dtype: args.dtype.burn(),
        piece_bytes,
        gradient_checkpointing: match args.recompute_layers {
            Some(n) => Recompute::resolved(n, usize::MAX),
            None => Recompute::from(args.gradient_checkpointing),
        },
        warmup: args.warmup,
        steps: args.steps,
        lr: args.lr,
        repeat_batch: args.repeat_batch,
        prefill_runs: args.prefill_runs,
        prompt: args.prompt,
        decode_tokens: args.decode_tokens,
        decode_batch: args.decode_batch.unwrap_or(args.batch),
        seed: args.seed,
        profile: args.profile,
        backend: opened.backend.name(),
    };
    let plan = plan(&settings, args.dtype, &opened.facts())?;
    if args.plan {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
        return Ok(());
    }
    if args.check_kernels {
        let cfg = load_config(&settings.model)?;
        let rows = (settings.batch * settings.seq).clamp(1, 4096);
        let (mut report, ok) =
            kernels::check_kernels(&cfg, rows, settings.rank, &kernels::DTYPES, &device)?;
        let (fused_report, fused_ok) = fused::check_fused(&cfg, rows, &kernels::DTYPES, &device)?;
        report["fused_kernels"] = fused_report;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if !(ok && fused_ok) {
            anyhow::bail!("bench --check-kernels: a kernel is out of tolerance (see above)");
        }
        return Ok(());
    }
    let report = if args.ceilings {
        let cfg = load_config(&settings.model)?;
        ceilings::ceilings(&cfg, settings.batch, settings.seq, 8192, &device)?
    } else {
        let mut report = run(&settings, &device)?;
        // The estimate beside the measurement: the pool holds the plan's total less the runtime.
        let pool = plan.chosen().total - plan.chosen().runtime;
        report["memory"]["plan_pool_bytes"] = pool.into();
        if let Some(peak) = report["memory"]["peak_reserved_bytes"].as_u64() {
            report["memory"]["plan_error"] = (pool as f64 / peak.max(1) as f64 - 1.0).into();
        }
        report["plan"] = plan.to_json();
        report
    };
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        gemma4_store::write_atomic(path, text.as_bytes())?;
    }
    if !args.ceilings {
        eprintln!("{}", summary(&report));
    }
    println!("{text}");
    Ok(())
}

/// The memory plan of the benchmark's step (the estimator `train --plan` uses).
fn plan(s: &BenchSettings, dtype: WeightDtype, facts: &DeviceFacts) -> Result<MemoryPlan> {
    let cfg = load_config(&s.model)?;
    let lora = LoraConfig::new(s.rank, s.alpha, TargetModules::List(s.targets.clone()));
    let input = PlanInput { batch: s.batch, seq: s.seq, dtype, lora };
    Ok(MemoryPlan::new(&cfg, &input, facts, s.gradient_checkpointing)?)
}
