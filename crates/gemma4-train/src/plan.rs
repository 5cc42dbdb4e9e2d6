//! The memory plan: peak device memory of a training step, estimated from the model's structure
//! (config: layers, widths, heads, head dims, sliding/full, KV sharing, PLE, MoE, vocabulary)
//! and the recipe (batch, seq, LoRA rank and targets, dtype, loss chunk), with and without
//! layer recomputation; compared with the device's memory, it resolves `gradient_checkpointing
//! = "auto"` and `dtype = "auto"`, and refuses a run that cannot fit before anything loads.
//! `train --plan` prints it, `train` runs the same check first, and `bench` reports it beside
//! the peak it measures (docs/performance.md: the estimate against measured peaks).
//!
//! ```text
//! weights            ParamCounts (the PLE table stays on the host; a tied head is a copy)
//! adapter+optimizer  LoRA factors, their gradients and AdamW's two moments, f32
//! activations        without recomputation: every layer's tape (plan/tape.rs)
//!                    with: each layer's input, the donors' K/V, the PLE inputs, one layer's tape
//! backward / loss    the larger transient: a layer's backward, or one loss chunk's logits
//! runtime            the GPU driver's context (nvidia-smi minus Burn's pool, measured)
//! ```

mod report;
mod tape;

use std::collections::{BTreeMap, BTreeSet};

use gemma4_lora::LoraConfig;
use gemma4_model::{Gemma4TextConfig, ParamCounts, ProjName, Projection, Site, WeightDtype};
use serde::Serialize;

use crate::error::Result;
use crate::loss::chunk_rows;
use crate::recipe::Recipe;
use tape::{Dims, layer};

pub use report::MemoryPlan;

/// Memory a GPU process holds outside Burn's pool: the CUDA context and cuBLAS workspace
/// (nvidia-smi 50.2 GiB against the pool's 49.6 GiB on an H200, docs/performance.md).
pub const GPU_RUNTIME_BYTES: u64 = 600 << 20;

/// `auto` turns recomputation on when the estimate without it passes this share of the device.
pub const AUTO_SHARE: f64 = 0.9;

/// What the plan needs to know about the device (the CLI finds it: `backend.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceFacts {
    /// `cpu`, `cuda`, `wgpu`, `vulkan`.
    pub backend: String,
    /// A CubeCL device: the project's fused kernels, the GPU driver's context. Else the CPU's
    /// plain ops.
    pub gpu: bool,
    /// The backend computes in bf16 (CUDA; not WGSL or Vulkan's SPIR-V path).
    pub bf16: bool,
    /// Bytes the device holds (CUDA: total memory; Vulkan: the largest device-local heap;
    /// Metal: the recommended working set; CPU: MemTotal). `None`: not reported.
    pub memory: Option<u64>,
    /// Where `memory` comes from, or why there is none.
    pub memory_source: String,
    /// The largest buffer weights and loss chunks are cut to (`LoadOptions::piece_bytes`).
    pub piece_bytes: usize,
    /// The adapter's products read bf16 activations as they are, keeping no f32 copy (the
    /// cuBLAS route of a bf16 model, where the adapter does so); false: an f32 copy per
    /// targeted projection, as `gemma4-lora`'s adapter makes it everywhere else.
    pub bf16_lora_inputs: bool,
    /// The widest rank whose change the adapter adds as one op reading the activations as they
    /// are, in any dtype (`gemma4_kernels::fuses_low_rank_add`: wgpu), without dropout; `None`:
    /// an f32 copy per targeted projection.
    pub low_rank_add_rank: Option<usize>,
    /// Attention runs as the flash kernel (`gemma4_kernels::fused::flash_enabled`): it keeps
    /// q, k, v, its output and a log-sum-exp per row, no `[s, t]` probabilities.
    pub flash: bool,
}

impl DeviceFacts {
    /// `dtype = "auto"`: bf16 where the backend has it, f16 (with its guards) on other GPUs,
    /// f32 on the CPU.
    pub fn auto_dtype(&self) -> WeightDtype {
        match (self.gpu, self.bf16) {
            (true, true) => WeightDtype::Bf16,
            (true, false) => WeightDtype::F16,
            (false, _) => WeightDtype::F32,
        }
    }
}

/// The shape of a step the plan estimates.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput {
    /// Rows per micro-batch and tokens per row (the recipe's `max_seq_len`: the longest batch).
    pub batch: usize,
    pub seq: usize,
    pub dtype: WeightDtype,
    /// Rank, targets, dropout.
    pub lora: LoraConfig,
}

/// One estimate, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Estimate {
    pub weights: u64,
    pub adapter_optimizer: u64,
    /// Kept through the backward pass (see the module doc).
    pub activations: u64,
    /// The largest transient of the backward pass, on top of `activations`.
    pub backward: u64,
    /// One loss chunk's logits and gradients and the hidden-state gradient, on top of what the
    /// loss phase keeps.
    pub loss_chunks: u64,
    pub runtime: u64,
    /// The peak: weights, adapter, runtime and the larger of the two phases.
    pub total: u64,
}

/// Estimate the peak of one micro-batch's step of `input` on `cfg`, with or without layer
/// recomputation, on a GPU (fused kernels) or the CPU (plain ops).
pub fn estimate(
    cfg: &Gemma4TextConfig,
    input: &PlanInput,
    facts: &DeviceFacts,
    recompute: bool,
) -> Result<Estimate> {
    estimate_layers(cfg, input, facts, if recompute { cfg.layers.len() } else { 0 })
}

/// [`estimate`] with the first `k` layers recomputed and the rest kept on the tape (`0`: none,
/// the layer count: all). Between the two, the peak is the larger of the backward through the
/// taped layers (every recomputed layer's input kept, the taped layers' tapes) and the
/// recomputation below them (one recomputed layer's tape).
pub fn estimate_layers(
    cfg: &Gemma4TextConfig,
    input: &PlanInput,
    facts: &DeviceFacts,
    k: usize,
) -> Result<Estimate> {
    let (dt, n_layers) = (bytes(input.dtype), cfg.layers.len());
    let rd = if input.dtype == WeightDtype::F16 { 4 } else { dt };
    let d = Dims {
        b: input.batch as u64,
        s: input.seq as u64,
        dt,
        rd,
        plain: !facts.gpu,
        r: input.lora.r as u64,
        dropout: input.lora.lora_dropout > 0.0,
        lora_reads_input: (input.dtype == WeightDtype::Bf16 && facts.bf16_lora_inputs)
            || (input.lora.lora_dropout == 0.0
                && facts.low_rank_add_rank.is_some_and(|r| input.lora.r <= r)),
        flash: facts.flash,
    };
    let (n, e) = (d.b * d.s, cfg.hidden_size as u64);
    let (targets, adapter_params) = targets(cfg, &input.lora)?;
    let tapes: Vec<_> = (0..n_layers)
        .map(|i| layer(cfg, &cfg.layers[i], targets.get(&i).unwrap_or(&BTreeSet::new()), &d))
        .collect();
    let p = ParamCounts::from_config(cfg);
    let head_copy = if cfg.tie_word_embeddings { p.embed_tokens } else { 0 };
    let weights = (p.total - p.ple_table + head_copy) as u64 * dt;
    let adapter_optimizer = 16 * adapter_params; // factor, gradient, two moments; f32
    // The loss: one chunk's raw logits and their gradient (the plain ops keep f32 copies), the
    // f32 gradient of the hidden states and one chunk's share of it.
    let (rows, vocab) = (chunk_rows(cfg.vocab_size, facts.piece_bytes) as u64, cfg.vocab_size);
    let per_chunk = if d.plain { 6 * 4 } else { 2 * dt };
    let loss_chunks = rows.min(n) * vocab as u64 * per_chunk + n * e * (4 + dt);
    // Masks (`[b, 1, s, s]` bools per layer type; flash attention: the `[b, s]` i32 padding and
    // segments its kernel reads) and the PLE inputs `[b, s, L, D]`.
    let ple = n * (n_layers * cfg.hidden_size_per_layer_input) as u64 * dt;
    let masks = if facts.flash { 2 * 4 * n } else { 2 * d.b * d.s * d.s };
    let k = k.min(n_layers);
    let (activations, backward, loss_base) = if k == 0 {
        let saved: u64 = tapes.iter().map(|t| t.saved).sum();
        let top = tapes.last().map_or(0, |t| t.backward);
        // The backward starts from `hidden.cast(f32) · g`.
        (saved + masks, top + 4 * n * e, saved + masks + ple)
    } else {
        // Each recomputed layer's input, and the K/V of the donors among them.
        let donors: BTreeSet<usize> =
            cfg.layers.iter().filter_map(|l| l.kv_donor).filter(|&i| i < k).collect();
        let donor_kv: u64 = donors
            .iter()
            .map(|&i| {
                2 * d.b * d.s * (cfg.layers[i].num_key_value_heads * cfg.layers[i].head_dim) as u64
            })
            .sum();
        let kept = k as u64 * n * e * rd + donor_kv * dt + ple + masks;
        let (below, above) = tapes.split_at(k);
        let top = below.iter().map(|t| t.saved + t.backward).max().unwrap_or(0);
        let widest = below.iter().map(|t| t.saved).max().unwrap_or(0);
        // Pass 2: one layer on the tape, the gradient at its output, the donors' K/V gradients.
        let recompute = (kept + widest, top - widest + 4 * n * e + donor_kv * 4);
        // The taped layers above k, and the backward through them.
        let taped: u64 = above.iter().map(|t| t.saved).sum();
        let through = match above.last() {
            Some(last) => (kept + taped, last.backward + 4 * n * e + donor_kv * 4),
            None => (0, 0),
        };
        let (a, b) =
            if through.0 + through.1 > recompute.0 + recompute.1 { through } else { recompute };
        (a, b, kept + taped)
    };
    let runtime = if facts.gpu { GPU_RUNTIME_BYTES } else { 0 };
    let fixed = weights + adapter_optimizer + runtime;
    let total = fixed + (activations + backward).max(loss_base + loss_chunks);
    Ok(Estimate { weights, adapter_optimizer, activations, backward, loss_chunks, runtime, total })
}

fn bytes(d: WeightDtype) -> u64 {
    match d {
        WeightDtype::F32 => 4,
        WeightDtype::F16 | WeightDtype::Bf16 => 2,
    }
}

/// Every projection of the config, as the loaded model lists them (paths, widths).
fn projections(cfg: &Gemma4TextConfig) -> Vec<Projection> {
    let prefix = if cfg.multimodal { "model.language_model." } else { "model." };
    let (e, h) = (cfg.hidden_size, cfg.num_attention_heads);
    let mut out = Vec::new();
    for (i, spec) in cfg.layers.iter().enumerate() {
        let (q, kv, m) =
            (h * spec.head_dim, spec.num_key_value_heads * spec.head_dim, spec.intermediate_size);
        let mut list = vec![(ProjName::QProj, e, q)];
        if spec.kv_donor.is_none() {
            list.push((ProjName::KProj, e, kv));
            if !spec.k_eq_v {
                list.push((ProjName::VProj, e, kv));
            }
        }
        list.extend([
            (ProjName::OProj, q, e),
            (ProjName::GateProj, e, m),
            (ProjName::UpProj, e, m),
            (ProjName::DownProj, m, e),
        ]);
        out.extend(list.into_iter().map(|(proj, in_features, out_features)| Projection {
            site: Site { layer: i, proj },
            path: format!("{prefix}layers.{i}.{}", proj.hf_path()),
            in_features,
            out_features,
        }));
    }
    out
}

/// The projections the recipe's `[lora]` targets, by layer, and the adapter's parameters:
/// `r·(in + out)` per targeted projection, `r·E·(in + out)` per targeted expert parameter
/// (PEFT's `target_parameters`).
fn targets(
    cfg: &Gemma4TextConfig,
    lora: &LoraConfig,
) -> Result<(BTreeMap<usize, BTreeSet<ProjName>>, u64)> {
    let chosen = gemma4_lora::target::select_from(projections(cfg), cfg.num_hidden_layers, lora)?;
    let r = lora.r as u64;
    let mut params: u64 = chosen.iter().map(|p| r * (p.in_features + p.out_features) as u64).sum();
    let mut by_layer: BTreeMap<usize, BTreeSet<ProjName>> = BTreeMap::new();
    for p in chosen {
        by_layer.entry(p.site.layer).or_default().insert(p.site.proj);
    }
    if cfg.enable_moe_block {
        let (e, mi, x) = (cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts);
        for t in lora.target_parameters.iter().flatten() {
            let widths = match t {
                t if t.ends_with("gate_up_proj") => e + 2 * mi,
                t if t.ends_with("down_proj") => mi + e,
                _ => 0,
            };
            params += r * (x * widths * cfg.num_hidden_layers) as u64;
        }
    }
    Ok((by_layer, params))
}

/// Plan `recipe` on `cfg` and the device: the dtype resolved (`auto`), both estimates, the
/// recomputation choice (`auto`). Returns the recipe with both values concrete (what
/// `recipe.resolved.toml` records) and the plan; [`MemoryPlan::check`] says whether it fits.
pub fn plan_recipe(
    recipe: &Recipe,
    cfg: &Gemma4TextConfig,
    facts: &DeviceFacts,
) -> Result<(Recipe, MemoryPlan)> {
    let dtype = recipe.model.dtype.fixed().unwrap_or_else(|| facts.auto_dtype());
    let input = PlanInput {
        batch: recipe.train.batch_size,
        seq: recipe.data.max_seq_len,
        dtype,
        lora: recipe.lora.clone(),
    };
    let plan = MemoryPlan::new(cfg, &input, facts, recipe.train.gradient_checkpointing)?;
    let mut resolved = recipe.clone();
    resolved.model.dtype = dtype.into();
    resolved.train.gradient_checkpointing = plan.resolved();
    Ok((resolved, plan))
}
