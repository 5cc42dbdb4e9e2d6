//! Everything a run needs before the loop: the base model (a checkpoint directory, or the tiny
//! built-in one materialised under the output directory), its tokenizer and chat template, and
//! the tokenised splits.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device};
use gemma4_data::{ChatTemplate, Split, Tokenizer, load_split};
use gemma4_model::{Gemma4TextModel, LoadOptions};

use crate::error::{Result, TrainError};
use crate::recipe::Recipe;
use crate::tiny::write_tiny_model;

/// A loaded base model with its text tooling.
pub struct Base {
    pub dir: PathBuf,
    pub model: Gemma4TextModel,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub warnings: Vec<String>,
}

/// The directory of the recipe's base model (creating the built-in one if needed).
pub fn model_dir(recipe: &Recipe) -> Result<PathBuf> {
    match (&recipe.model.path, &recipe.model.builtin) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(_)) => {
            let dir = recipe.train.out_dir.join("base_model");
            write_tiny_model(&dir, recipe.train.seed)?;
            Ok(dir)
        }
        (None, None) => Err(TrainError::Run("[model]: no path and no builtin".into())),
    }
}

pub fn dtype(name: &str) -> DType {
    match name {
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        _ => DType::F32,
    }
}

/// Load the base model (weights in pieces of at most `piece_bytes`, the device's limit),
/// tokenizer and chat template.
pub fn load_base(recipe: &Recipe, device: &Device, piece_bytes: usize) -> Result<Base> {
    let dir = model_dir(recipe)?;
    let options = LoadOptions::new(dtype(&recipe.model.dtype)).with_piece_bytes(piece_bytes);
    let (model, _report, warnings) = Gemma4TextModel::from_dir_with(&dir, device, options)?;
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(TrainError::Run(format!("no tokenizer.json in {} (hint: download the checkpoint with its tokenizer files)", dir.display())));
    }
    let tokenizer = Tokenizer::from_file(&tok_path)?;
    let template = ChatTemplate::from_model_dir(&dir)?.unwrap_or_else(ChatTemplate::builtin);
    Ok(Base { dir, model, tokenizer, template, warnings })
}

/// Tokenise one split.
pub fn split(base: &Base, recipe: &Recipe, path: &Path) -> Result<Split> {
    Ok(load_split(path, &recipe.data, Some(&base.template), &base.tokenizer)?)
}
