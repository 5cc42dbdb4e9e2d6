//! `gemma4-tune fuse --model BASE [--adapter DIR] --gguf OUT.gguf [--quant f16]`: the base
//! (safetensors directory or GGUF file) with the adapter merged, as one GGUF file llama.cpp,
//! Ollama and LM Studio load (`gemma4_lora::fuse::gguf`). Also the adapter loader the
//! `export-adapter` command shares: PEFT files resolved against the base's config.

use std::path::Path;

use anyhow::{Context, Result};
use gemma4_lora::LoraAdapter;
use gemma4_lora::fuse::gguf::{GgufOptions, fuse_gguf};
use gemma4_lora::{layout::Layout, peft_io};
use gemma4_model::CheckpointSource;
use gemma4_model::gguf_out::ExportQuant;

use crate::backend;

/// The PEFT adapter in `dir`, resolved against the config of `source` (no weights are read).
pub(super) fn load_adapter(source: &CheckpointSource, dir: &Path) -> Result<LoraAdapter> {
    let loaded = source.config().context("reading the base model's config")?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let prefix = if loaded.config.multimodal { "model.language_model." } else { "model." };
    let device = backend::cpu()?;
    let layout = Layout::from_config(&loaded.config, prefix, &device);
    peft_io::load_for(dir, &layout).with_context(|| format!("loading adapter {}", dir.display()))
}

pub(super) fn run(args: &super::fuse::Args, out: &Path) -> Result<()> {
    let quant = ExportQuant::parse(&args.quant)?;
    let mut inputs: Vec<&Path> = vec![&args.model];
    inputs.extend(args.adapter.as_deref());
    gemma4_store::refuse_input_overwrite(out, &inputs)?;
    if out.exists() && !args.force {
        anyhow::bail!("{} exists (hint: pass --force to replace it)", out.display());
    }
    let source = CheckpointSource::detect(&args.model)?;
    let adapter = args.adapter.as_deref().map(|dir| load_adapter(&source, dir)).transpose()?;
    let name = out.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let opts = GgufOptions { quant, name };
    let report = fuse_gguf(&source, adapter.as_ref(), out, &opts)
        .with_context(|| format!("writing {}", out.display()))?;
    if !report.fallbacks.is_empty() {
        eprintln!(
            "note: {} matrices have rows that are not whole {quant:?} blocks and were written as llama.cpp falls back (Q4_K → Q5_0, Q6_K → Q8_0, else F16): {}",
            report.fallbacks.len(),
            report.fallbacks.join(", ")
        );
    }
    println!(
        "wrote {} ({}, {quant:?}): {} tensors, {} with the adapter merged, {:.1} MB",
        out.display(),
        report.arch,
        report.tensors,
        report.merged,
        report.bytes as f64 / 1e6
    );
    Ok(())
}
