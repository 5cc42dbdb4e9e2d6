//! `gemma4-tune fuse --model DIR --adapter DIR --out DIR [--dtype keep|bf16|f16|f32]
//! [--max-shard-size 5GB] [--force]`: merge a LoRA adapter into the base weights and write a
//! checkpoint transformers loads as-is (`gemma4_lora::fuse`). With `--gguf OUT.gguf [--quant
//! f16]` instead of `--out`: one GGUF file for llama.cpp (`fuse_gguf.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use gemma4_lora::{FuseOptions, fuse, fuse::check_out_dir, layout::Layout, peft_io};
use gemma4_model::{Checkpoint, CheckpointSource, Gemma4TextConfig, WeightDtype};

use crate::backend;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Base model directory: config.json + model.safetensors (or the index and its shards);
    /// with --gguf also a GGUF file.
    #[arg(long)]
    pub(super) model: PathBuf,
    /// Adapter directory (PEFT files: adapter_config.json + adapter_model.safetensors);
    /// optional with --gguf (then the base is converted as it is).
    #[arg(long)]
    pub(super) adapter: Option<PathBuf>,
    /// Output directory; built as `.<out>.tmp-XXXXXX` beside it and renamed when complete.
    #[arg(long, required_unless_present = "gguf", conflicts_with = "gguf")]
    out: Option<PathBuf>,
    /// Write one GGUF file for llama.cpp / Ollama / LM Studio instead of a checkpoint directory.
    #[arg(long)]
    pub(super) gguf: Option<PathBuf>,
    /// GGUF block type of the weight matrices: f32, f16, bf16, q8_0, q4_0, or llama.cpp's k-quant mixes q4_k_m (Q4_K, Q6_K for the head and some attn_v/ffn_down) and q6_k (1-D tensors stay f32).
    #[arg(long, default_value = "f16", requires = "gguf")]
    pub(super) quant: String,
    /// Tensor dtype: `keep` casts merged weights back to their dtype in the base; the others
    /// convert every float tensor (and set `dtype` in config.json).
    // `::std::option::Option` opts out of clap's optional-argument handling: `keep` is `None`.
    #[arg(long, default_value = "keep", value_parser = out_dtype())]
    dtype: ::std::option::Option<WeightDtype>,
    /// Start a new shard above this much tensor data: bytes, or with KB/MB/GB (10³ steps) or
    /// KiB/MiB/GiB (2¹⁰ steps), as HF's `max_shard_size`.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    max_shard_size: u64,
    /// Replace an existing non-empty output directory.
    #[arg(long)]
    pub(super) force: bool,
}

/// `--dtype keep|bf16|f16|f32`: `keep` is `None`, the others a [`WeightDtype`].
fn out_dtype() -> impl TypedValueParser<Value = Option<WeightDtype>> {
    PossibleValuesParser::new(["keep", "bf16", "f16", "f32"])
        .try_map(|s| if s == "keep" { Ok(None) } else { s.parse::<WeightDtype>().map(Some) })
}

pub fn run(args: Args) -> Result<()> {
    if let Some(gguf) = &args.gguf {
        return super::fuse_gguf::run(&args, gguf);
    }
    let (Some(adapter_dir), Some(out)) = (args.adapter.clone(), args.out.clone()) else {
        bail!("fuse --out needs --adapter (only --gguf converts a base without one)");
    };
    // Fail on the output before spending time on loading.
    check_out_dir(&args.model, &out, args.force)?;
    // What the inputs resolve to, not their names: a model directory of symlinks (the Hugging
    // Face cache) may point into `--out`, which `--force` replaces.
    gemma4_store::refuse_input_overwrite(&out, &[&args.model, &adapter_dir])?;
    if args.force
        && adapter_dir
            .canonicalize()
            .ok()
            .zip(out.canonicalize().ok())
            .is_some_and(|(a, o)| a.starts_with(o))
    {
        bail!(
            "--out {} contains the adapter {}: refusing to replace it",
            out.display(),
            adapter_dir.display()
        );
    }
    // The adapter is resolved against the config and the checkpoint's tensor table only (no
    // weights are read), and the merge streams tensor by tensor: a checkpoint larger than
    // memory fuses fine.
    let device = backend::cpu()?;
    if matches!(CheckpointSource::detect(&args.model), Ok(CheckpointSource::Gguf(_))) {
        bail!(
            "{}: fuse writes a safetensors checkpoint and needs a safetensors base; GGUF bases are read-only here (use the HF checkpoint the GGUF was made from)",
            args.model.display()
        );
    }
    let loaded = Gemma4TextConfig::from_file(&args.model.join("config.json"))
        .with_context(|| format!("reading {}", args.model.join("config.json").display()))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let ckpt = Checkpoint::open(&args.model)
        .with_context(|| format!("opening the checkpoint in {}", args.model.display()))?;
    let prefix = if ckpt.tensors.contains_key("model.language_model.embed_tokens.weight") {
        "model.language_model."
    } else {
        "model."
    };
    let layout = Layout::from_config(&loaded.config, prefix, &device);
    drop(ckpt);
    let adapter = peft_io::load_for(&adapter_dir, &layout)
        .with_context(|| format!("loading adapter {}", adapter_dir.display()))?;
    let opts =
        FuseOptions { dtype: args.dtype, max_shard_size: args.max_shard_size, force: args.force };
    let report = fuse(&args.model, &adapter, &out, &opts).with_context(|| {
        format!("fusing {} into {}", adapter_dir.display(), args.model.display())
    })?;
    println!(
        "fused {} modules: {} tensors merged, {} copied, {} shard(s), {:.1} MB of tensors, side files: {} -> {}",
        adapter.modules.len(),
        report.merged,
        report.copied,
        report.shards,
        report.bytes as f64 / 1e6,
        report.files.join(", "),
        out.display()
    );
    Ok(())
}

/// `5GB`, `500MB`, `2GiB`, `123456` → bytes (HF `convert_file_size_to_int`, bytes only).
fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().with_context(|| {
        format!("size {text:?}: expected a whole number with an optional unit, e.g. 5GB")
    })?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        other => bail!(
            "size {text:?}: unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
        ),
    };
    match n.checked_mul(factor) {
        Some(0) => bail!("size {text:?} must be positive"),
        Some(bytes) => Ok(bytes),
        None => bail!("size {text:?} is too large"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_like_hf_max_shard_size() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500mb").unwrap(), 500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GB", "5XB", "0", "1.5GB", "99999999999TB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
