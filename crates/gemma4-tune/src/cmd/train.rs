//! `gemma4-tune train RECIPE [--set table.key=value]... [--resume [DIR] | --force]`

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use gemma4_train::{Recipe, checkpoint};

use crate::backend::{self, Backend};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipe (TOML), e.g. recipes/quickstart.toml.
    recipe: PathBuf,
    /// Override a recipe value, e.g. `--set optim.lr=1e-4` (repeatable).
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    overrides: Vec<String>,
    /// Resume from a checkpoint directory, or (no value) from the newest one in the run's output.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    resume: Option<String>,
    /// Start over in an output directory that holds an earlier run: it is first moved aside,
    /// whole, to `<out_dir>.old-<N>` (without this, such a directory is an error).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Compute backend (default: cuda, else vulkan, else wgpu, when compiled in; else cpu).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let (device, piece_bytes) =
        backend::device(args.backend.unwrap_or_else(backend::default_backend))?;
    let device = device.autodiff();
    let resume = match args.resume.as_deref() {
        None => None,
        Some("latest") => {
            let root = recipe.train.out_dir.join("checkpoints");
            Some(
                checkpoint::latest(&root)
                    .with_context(|| format!("--resume: no checkpoint in {}", root.display()))?,
            )
        }
        Some(dir) => Some(PathBuf::from(dir)),
    };
    if args.force
        && let Some(aside) = gemma4_train::run_dir::move_aside(&recipe.train.out_dir)?
    {
        println!(
            "--force: moved the earlier run in {} aside to {}",
            recipe.train.out_dir.display(),
            aside.display()
        );
    }
    println!("{}", recipe.to_toml());
    // First Ctrl-C: finish the step, save a checkpoint, exit 130. Second: exit at once.
    static INTERRUPT: AtomicBool = AtomicBool::new(false);
    ctrlc::set_handler(|| {
        if INTERRUPT.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to exit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let s =
        gemma4_train::train_until(&recipe, &device, piece_bytes, resume.as_deref(), &INTERRUPT)?;
    if s.interrupted {
        std::process::exit(130);
    }
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    println!(
        "done: {} steps | train loss {} | valid loss {} → {} (best {})",
        s.steps,
        f(s.final_train_loss),
        f(s.first_val_loss),
        f(s.final_val_loss),
        f(s.best_val_loss)
    );
    println!(
        "adapter: {} (best: {}); metrics: {}; plot: {}",
        s.out_dir.join("adapter").display(),
        s.out_dir.join("best").display(),
        s.out_dir.join("metrics.jsonl").display(),
        s.out_dir.join("loss.svg").display()
    );
    Ok(())
}
