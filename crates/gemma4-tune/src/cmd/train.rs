//! `gemma4-tune train RECIPE [--set table.key=value]... [--resume [DIR] | --force] [--plan [--json]]`

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use gemma4_train::{Recipe, checkpoint, plan, setup};

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
    /// Print the memory plan (peak device memory with and without recomputation, against the
    /// device's memory) and exit: 0 when the run fits, 1 when it does not. Reads only config.json.
    #[arg(long)]
    plan: bool,
    /// With --plan: the plan as JSON (bytes).
    #[arg(long, requires = "plan")]
    json: bool,
    /// Compute backend: `auto` takes a CUDA device, else a GPU through wgpu (Vulkan, Metal),
    /// else the CPU, and says which.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "GEMMA4_TUNE_BACKEND")]
    backend: Backend,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let opened = backend::open(args.backend)?;
    let facts = opened.facts();
    let backend::Opened { device, piece_bytes, .. } = opened;
    let cfg = setup::model_config(&recipe).context("the memory plan reads the model's config")?;
    // `auto` dtype and recomputation resolved for this device; the resolved recipe is the run's.
    let (recipe, plan) = plan::plan_recipe(&recipe, &cfg, &facts)?;
    if args.plan {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
        } else {
            plan.lines().iter().for_each(|l| println!("{l}"));
        }
        return Ok(plan.check()?);
    }
    println!("{}", plan.summary());
    plan.check()?;
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
            eprintln!("\ninterrupted again: exiting now (resume from the last saved checkpoint with --resume)");
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to exit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let s =
        gemma4_train::train_until(&recipe, &device, piece_bytes, resume.as_deref(), &INTERRUPT)?;
    if s.interrupted {
        println!("resume: {}", resume_command(&args.recipe, &args.overrides));
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

/// The command that continues an interrupted run: the same recipe and overrides, `--resume`.
fn resume_command(recipe: &Path, overrides: &[String]) -> String {
    let mut cmd = format!("gemma4-tune train {}", recipe.display());
    for o in overrides {
        cmd += &format!(" --set '{o}'");
    }
    cmd + " --resume"
}
