//! `gemma4-tune export-adapter --model BASE --adapter DIR --gguf OUT.gguf`: a PEFT adapter as a
//! llama.cpp LoRA GGUF for its base (`llama-cli -m BASE.gguf --lora OUT.gguf`), whether the base
//! is a safetensors directory (export it with `fuse --gguf`) or a GGUF file
//! (`gemma4_lora::gguf_adapter`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use gemma4_lora::gguf_adapter::export_adapter_gguf;
use gemma4_model::CheckpointSource;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The base the adapter was trained on: a safetensors directory or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Adapter directory (PEFT files: adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// Output: a llama.cpp LoRA adapter GGUF.
    #[arg(long)]
    gguf: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<()> {
    gemma4_store::refuse_input_overwrite(&args.gguf, &[&args.model, &args.adapter])?;
    if args.gguf.exists() && !args.force {
        bail!("{} exists (hint: pass --force to replace it)", args.gguf.display());
    }
    let source = CheckpointSource::detect(&args.model)?;
    let config = source.config().context("reading the base model's config")?.config;
    let adapter = super::fuse_gguf::load_adapter(&source, &args.adapter)?;
    let name = args
        .adapter
        .file_name()
        .map_or_else(|| "adapter".into(), |s| s.to_string_lossy().into_owned());
    let n = export_adapter_gguf(&adapter, &config, &args.gguf, &name)
        .with_context(|| format!("writing {}", args.gguf.display()))?;
    println!("wrote {} ({n} adapted tensors)", args.gguf.display());
    Ok(())
}
