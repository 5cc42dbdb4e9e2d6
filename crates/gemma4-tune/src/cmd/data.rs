//! `gemma4-tune data RECIPE [--split train] [--show N]`: dataset statistics and rendered samples
//! with the trained spans marked.

use std::path::PathBuf;

use anyhow::{Result, bail};
use gemma4_data::{format_stats, load_split, show_sample};
use gemma4_train::{Recipe, setup};

#[derive(clap::Args, Debug)]
pub struct Args {
    recipe: PathBuf,
    #[arg(long, default_value = "train", value_parser = ["train", "valid", "test"])]
    split: String,
    /// Print the first N samples as the model will see them, trained spans marked.
    #[arg(long, default_value_t = 0)]
    show: usize,
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let path = match args.split.as_str() {
        "train" => Some(recipe.data.train.clone()),
        "valid" => recipe.data.valid.clone(),
        _ => recipe.data.test.clone(),
    };
    let Some(path) = path else { bail!("the recipe has no `{}` split", args.split) };
    let dir = setup::model_dir(&recipe)?;
    let (tok, template) = setup::text_tools(&dir)?;
    let split = load_split(&path, &recipe.data, Some(&template), &tok)?;
    println!("{} ({})", path.display(), args.split);
    println!("{}", format_stats(&split.stats));
    for s in split.samples.iter().take(args.show) {
        println!(
            "--- line {} ({} tokens{}) ---",
            s.line,
            s.ids.len(),
            if s.truncated { ", truncated" } else { "" }
        );
        println!("{}", show_sample(s, &tok));
    }
    Ok(())
}
