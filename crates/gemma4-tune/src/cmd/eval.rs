//! `gemma4-tune eval RECIPE [--adapter DIR] [--split valid|test]`: loss and perplexity.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use gemma4_train::{Recipe, eval::evaluate, setup};

use crate::backend::{self, Backend};

#[derive(clap::Args, Debug)]
pub struct Args {
    recipe: PathBuf,
    /// Adapter directory (PEFT files); without it the base model is evaluated.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Which split of the recipe.
    #[arg(long, default_value = "valid", value_parser = ["train", "valid", "test"])]
    split: String,
    /// Batches to evaluate (0 = all).
    #[arg(long, default_value_t = 0)]
    batches: usize,
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    overrides: Vec<String>,
    /// Compute backend: `auto` takes a CUDA device, else a GPU through wgpu (Vulkan, Metal),
    /// else the CPU, and says which.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "GEMMA4_TUNE_BACKEND")]
    backend: Backend,
}

pub fn run(args: Args) -> Result<()> {
    let mut recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let opened = backend::open(args.backend)?;
    // `dtype = "auto"`: the device's choice, as `train` makes it.
    let auto = opened.facts().auto_dtype();
    let backend::Opened { device, piece_bytes, .. } = opened;
    recipe.model.dtype = recipe.model.dtype.fixed().unwrap_or(auto).into();
    let path = match args.split.as_str() {
        "train" => Some(recipe.data.train.clone()),
        "valid" => recipe.data.valid.clone(),
        _ => recipe.data.test.clone(),
    };
    let Some(path) = path else { bail!("the recipe has no `{}` split", args.split) };
    let base = setup::load_base(&recipe, &device, piece_bytes)?;
    let split = setup::split(&base, &recipe, &path)?;
    let adapter = match &args.adapter {
        Some(dir) => Some(
            gemma4_lora::peft_io::load(dir, &base.model)
                .with_context(|| format!("loading adapter {}", dir.display()))?,
        ),
        None => None,
    };
    let loss = evaluate(&base.model, adapter.as_ref(), &split, &recipe, args.batches)?;
    let what = args
        .adapter
        .as_ref()
        .map_or("base model".to_string(), |d| format!("adapter {}", d.display()));
    println!(
        "{} split {} ({} samples, {} target tokens), {what}: loss {loss:.4} | perplexity {:.3}",
        args.split,
        path.display(),
        split.stats.samples,
        split.stats.target_tokens,
        loss.exp()
    );
    Ok(())
}
