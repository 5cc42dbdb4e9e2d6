//! Building a [`Gemma4TextModel`] from a checkpoint: [`LoadOptions`] (weight dtype, device piece
//! limit), the entry points from a model path or a [`CheckpointSource`], and `load_with`, which
//! asks the weight table for every module's tensors and checks that none is left over.

use std::path::Path;

use burn::tensor::{DType, Device};

use crate::checkpoint::Checkpoint;
use crate::config::{Gemma4TextConfig, LoadedConfig};
use crate::error::{ModelError, Result};
use crate::layer::DecoderLayer;
use crate::model::Gemma4TextModel;
use crate::norm::RmsNorm;
use crate::pieces::MAX_PIECE_BYTES;
use crate::ple::Ple;
use crate::rope::Rope;
use crate::source::CheckpointSource;
use crate::vocab::{Embedding, Head};
use crate::weights::{LoadReport, Weights};

/// How weights are loaded onto a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Dtype of projection and embedding weights (norms and scalars stay f32).
    pub dtype: DType,
    /// Largest device buffer one weight occupies, in bytes: bigger tensors (the vocabulary
    /// matrices, stacked experts) load as pieces cut along their first axis. The device's
    /// largest buffer, or [`MAX_PIECE_BYTES`] (see there), whichever is smaller.
    pub piece_bytes: usize,
}

impl LoadOptions {
    /// Weights in `dtype`, pieces of at most [`MAX_PIECE_BYTES`].
    pub fn new(dtype: DType) -> Self {
        Self { dtype, piece_bytes: MAX_PIECE_BYTES }
    }

    /// The same options with pieces of at most `piece_bytes` (at least 1).
    pub fn with_piece_bytes(self, piece_bytes: usize) -> Self {
        Self { piece_bytes: piece_bytes.max(1), ..self }
    }
}

impl Gemma4TextModel {
    /// Load `config.json` and the checkpoint in `dir`; weights in `dtype` (norms stay f32),
    /// pieces of at most [`MAX_PIECE_BYTES`]. Returns the model, the load report and config
    /// warnings (unknown keys).
    ///
    /// `dir` may also be a `.gguf` file, or a directory holding one `.gguf` and no
    /// `config.json`: the config then comes from the GGUF metadata (Gemma 3 only).
    pub fn from_dir(
        dir: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<(Self, LoadReport, Vec<String>)> {
        Self::from_dir_with(dir, device, LoadOptions::new(dtype))
    }

    /// As [`Gemma4TextModel::from_dir`], loaded as `options` say.
    pub fn from_dir_with(
        dir: &Path,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport, Vec<String>)> {
        Self::from_source(&CheckpointSource::detect(dir)?, device, options)
    }

    /// Open `source` and build the model from it. Returns the model, the load report and
    /// config warnings (unknown keys).
    pub fn from_source(
        source: &CheckpointSource,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport, Vec<String>)> {
        let (loaded, ckpt) = source.open()?;
        let (model, report) = Self::load_with(loaded.config, &ckpt, device, options)?;
        Ok((model, report, loaded.warnings))
    }

    /// The resolved config of a model path (as [`Gemma4TextModel::from_dir`] accepts it: a
    /// directory with `config.json`, a `.gguf` file or a directory holding one), or of a
    /// `config.json` file, without weights.
    pub fn config_at(dir: &Path) -> Result<LoadedConfig> {
        if dir.is_file() && dir.extension().is_some_and(|e| e == "json") {
            return Gemma4TextConfig::from_file(dir);
        }
        CheckpointSource::detect(dir)?.config()
    }

    /// Build the model from an opened checkpoint, weights in `dtype`, pieces of at most
    /// [`MAX_PIECE_BYTES`]; every tensor is used or explicitly dropped.
    pub fn load(
        config: Gemma4TextConfig,
        ckpt: &Checkpoint,
        device: &Device,
        dtype: DType,
    ) -> Result<(Self, LoadReport)> {
        Self::load_with(config, ckpt, device, LoadOptions::new(dtype))
    }

    /// As [`Gemma4TextModel::load`], loaded as `options` say.
    pub fn load_with(
        config: Gemma4TextConfig,
        ckpt: &Checkpoint,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport)> {
        if !device.supports_dtype(options.dtype) {
            return Err(ModelError::Input(format!(
                "the device does not support dtype {:?}",
                options.dtype
            )));
        }
        let mut w = Weights::new(ckpt, device, &options)?;
        let (v, e) = (config.vocab_size, config.hidden_size);
        let embed_tokens =
            Embedding { pieces: w.get_pieces("embed_tokens.weight", None, [v, e], false)? };
        let ple = if config.hidden_size_per_layer_input > 0 {
            Some(Ple::load(&mut w, &config)?)
        } else {
            None
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::load(&mut w, &config, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::with_offset(
            w.get_f32("norm.weight", None, [e])?,
            config.rms_norm_eps,
            config.norm_weight_offset,
        );
        // The head as a contiguous `[e, v]`: `lm_head`, or for tied heads a transposed copy of
        // `embed_tokens` (memory for speed: a strided view is copied on every matmul).
        let head =
            if config.tie_word_embeddings { "embed_tokens.weight" } else { "lm_head.weight" };
        let lm_head = Head { pieces: w.get_pieces(head, None, [v, e], true)? };
        let weight_prefix = w.prefix;
        let report = w.finish(&config)?;
        let rope = config
            .rope_parameters
            .iter()
            .filter_map(|(lt, rc)| {
                let d = config.layers.iter().find(|l| l.layer_type == *lt)?.head_dim;
                Some((*lt, Rope::new(rc, d)))
            })
            .collect();
        let device = device.clone();
        let piece_bytes = options.piece_bytes;
        let model = Self {
            config,
            embed_tokens,
            ple,
            layers,
            norm,
            lm_head,
            rope,
            device,
            weight_prefix,
            piece_bytes,
        };
        Ok((model, report))
    }
}
