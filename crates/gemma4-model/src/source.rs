//! Where a model's config and weights come from: a Hugging Face directory (safetensors and
//! `config.json`), a GGUF file (the config from its metadata), or random values for a config
//! (benchmarks). A model path is classified once ([`CheckpointSource::detect`]); opening it and
//! reading its config match on the kind, so no caller re-derives it from the file system.

use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, map_file};
use crate::config::{Gemma4TextConfig, LoadedConfig};
use crate::error::Result;
use crate::formats::gguf;
use crate::random::RandomInit;

/// The kind and place of a checkpoint.
#[derive(Clone, Debug)]
pub enum CheckpointSource {
    /// A Hugging Face directory: `config.json` and `model.safetensors` (or the shards of
    /// `model.safetensors.index.json`).
    Safetensors(PathBuf),
    /// A llama.cpp GGUF file; the config comes from its metadata (Gemma 3 only).
    Gguf(PathBuf),
    /// Weights computed for a config ([`RandomInit`]); nothing is read.
    Random {
        config: Box<Gemma4TextConfig>,
        init: RandomInit,
    },
}

impl CheckpointSource {
    /// What a model path holds: a `.gguf` file, or a directory with one `.gguf` and no
    /// `config.json`, is GGUF; anything else is read as a Hugging Face directory. Several
    /// `.gguf` files in a directory without `config.json` are an error naming them.
    pub fn detect(path: &Path) -> Result<Self> {
        if !path.join("config.json").is_file()
            && let Some(file) = gguf::find_gguf(path)?
        {
            return Ok(Self::Gguf(file));
        }
        Ok(Self::Safetensors(path.to_owned()))
    }

    /// The resolved config, without opening the weights.
    pub fn config(&self) -> Result<LoadedConfig> {
        match self {
            Self::Safetensors(dir) => Gemma4TextConfig::from_file(&dir.join("config.json")),
            Self::Gguf(path) => {
                let header = gguf::parse(&map_file(path)?, path)?;
                Gemma4TextConfig::from_json(&gguf::config_json(&header, path)?)
            }
            Self::Random { config, .. } => Ok(LoadedConfig { config: (**config).clone(), warnings: Vec::new() }),
        }
    }

    /// The resolved config and the checkpoint's tensors (memory-mapped, nothing decoded yet).
    pub fn open(&self) -> Result<(LoadedConfig, Checkpoint)> {
        match self {
            Self::Safetensors(dir) => {
                let loaded = Gemma4TextConfig::from_file(&dir.join("config.json"))?;
                Ok((loaded, Checkpoint::open(dir)?))
            }
            Self::Gguf(path) => {
                let (ckpt, json) = gguf::open(path)?;
                Ok((Gemma4TextConfig::from_json(&json)?, ckpt))
            }
            Self::Random { config, init } => {
                let ckpt = Checkpoint::random(config, *init);
                Ok((LoadedConfig { config: (**config).clone(), warnings: Vec::new() }, ckpt))
            }
        }
    }
}
