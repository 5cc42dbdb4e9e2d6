//! Everything a run needs before the loop: the base model (a checkpoint directory, or the tiny
//! built-in one materialised under the output directory), its tokenizer and chat template, and
//! the tokenised splits.
//!
//! [`Base::open`] is the one way a base is loaded — by training, and by every CLI command that
//! loads a checkpoint with its text tooling (`eval`, `generate`); `data` needs the text tooling
//! alone ([`text_tools`]).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gemma4_data::{ChatTemplate, Split, Tokenizer, load_split};
use gemma4_model::{Gemma4TextConfig, Gemma4TextModel, LoadOptions, LoadReport, WeightDtype};

use crate::error::{Result, TrainError};
use crate::recipe::Recipe;
use crate::tiny::write_tiny_model;

/// A loaded base model with its text tooling.
pub struct Base {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The model, weights in the requested dtype.
    pub model: Gemma4TextModel,
    /// What loading the weights used and dropped.
    pub report: LoadReport,
    /// The checkpoint's `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// The checkpoint's chat template, else the built-in Gemma 4 one.
    pub template: ChatTemplate,
    /// Config warnings (unknown keys) for the caller to show.
    pub warnings: Vec<String>,
}

impl Base {
    /// Load the model in `dir` as `options` say (weight dtype, the device's piece limit),
    /// then its tokenizer and chat template.
    pub fn open(dir: &Path, device: &Device, options: LoadOptions) -> Result<Self> {
        let (model, report, warnings) = Gemma4TextModel::from_dir_with(dir, device, options)?;
        let (tokenizer, template) = text_tools(dir)?;
        Ok(Self { dir: dir.to_owned(), model, report, tokenizer, template, warnings })
    }
}

/// The tokenizer (`tokenizer.json`, required) and chat template (the checkpoint's, else the
/// built-in one) of a checkpoint directory, without its weights.
pub fn text_tools(dir: &Path) -> Result<(Tokenizer, ChatTemplate)> {
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(TrainError::Run(format!(
            "no tokenizer.json in {} (hint: download the checkpoint with its tokenizer files)",
            dir.display()
        )));
    }
    let tokenizer = Tokenizer::from_file(&tok_path)?;
    let template = ChatTemplate::from_model_dir(dir)?.unwrap_or_else(ChatTemplate::builtin);
    Ok((tokenizer, template))
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

/// The recipe's model config, read without weights and without writing anything (the memory
/// plan): `config.json` of `[model] path` (or a `.gguf`'s metadata, or a config.json file), or
/// the built-in model's.
pub fn model_config(recipe: &Recipe) -> Result<Gemma4TextConfig> {
    match &recipe.model.path {
        Some(p) => Ok(Gemma4TextModel::config_at(p)?.config),
        None => {
            let vocab = gemma4_data::tiny_tokenizer().vocab_size();
            Ok(Gemma4TextConfig::from_json(&crate::tiny::tiny_config(vocab))?.config)
        }
    }
}

/// Load the recipe's base model (weights in the recipe's dtype, pieces of at most
/// `piece_bytes`, the device's limit), tokenizer and chat template ([`Base::open`]). A dtype
/// still `auto` (not resolved by [`crate::plan`] for a device) loads as f32.
pub fn load_base(recipe: &Recipe, device: &Device, piece_bytes: usize) -> Result<Base> {
    let dtype = recipe.model.dtype.fixed().unwrap_or(WeightDtype::F32);
    let options = LoadOptions::new(dtype.burn()).with_piece_bytes(piece_bytes);
    Base::open(&model_dir(recipe)?, device, options)
}

/// Tokenise one split. A token id the model has no embedding for is an error here, naming the
/// line, tokenizer.json and config.json (issue 16: it surfaced late, in the forward pass).
pub fn split(base: &Base, recipe: &Recipe, path: &Path) -> Result<Split> {
    let split = load_split(path, &recipe.data, Some(&base.template), &base.tokenizer)?;
    let vocab = base.model.config.vocab_size;
    for s in &split.samples {
        if let Some(&id) = s.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(TrainError::Run(format!(
                "{}:{}: token id {id} from {} is >= the model's vocab_size {vocab} (config.json in {}): the tokenizer does not belong to this model",
                path.display(),
                s.line,
                base.dir.join("tokenizer.json").display(),
                base.dir.display()
            )));
        }
    }
    Ok(split)
}
