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
        /// The config whose tensors are drawn (every one its checkpoint would hold).
        config: Box<Gemma4TextConfig>,
        /// Seed and scale of the values.
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
            Self::Gguf(path) => gguf::parse(&map_file(path)?, path)?.config(path),
            Self::Random { config, .. } => {
                Ok(LoadedConfig { config: (**config).clone(), warnings: Vec::new() })
            }
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
                let loaded = Gemma4TextConfig::from_json(&json)
                    .map_err(|e| gguf::blame_metadata(e, path))?;
                Ok((loaded, ckpt))
            }
            Self::Random { config, init } => {
                let ckpt = Checkpoint::random(config, *init);
                Ok((LoadedConfig { config: (**config).clone(), warnings: Vec::new() }, ckpt))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file of a one-layer Gemma 3 (metadata only) holding `token_embd.weight`
    /// `[4, 2]` and `output_norm.weight` `[2]` (stored as llama.cpp does: `1 + w`), in F32, and
    /// `blk.0.ffn_up.weight` `[3, 64]` in Q8_0 (two blocks a row).
    fn tiny_gguf() -> Vec<u8> {
        let string = |s: &str| [&(s.len() as u64).to_le_bytes()[..], s.as_bytes()].concat();
        let mut kv: Vec<u8> =
            [string("general.architecture"), 8u32.to_le_bytes().to_vec(), string("gemma3")]
                .concat();
        let keys = [
            ("embedding_length", 2u32),
            ("block_count", 1),
            ("feed_forward_length", 4),
            ("attention.head_count", 1),
            ("attention.head_count_kv", 1),
            ("attention.key_length", 2),
            ("context_length", 8),
        ];
        for (k, v) in keys {
            kv.extend(
                [
                    string(&format!("gemma3.{k}")),
                    4u32.to_le_bytes().to_vec(),
                    v.to_le_bytes().to_vec(),
                ]
                .concat(),
            );
        }
        let tensor = |name: &str, dims: &[u64], ty: u32, offset: u64| {
            let mut t = [string(name), (dims.len() as u32).to_le_bytes().to_vec()].concat();
            dims.iter().for_each(|d| t.extend(d.to_le_bytes()));
            [t, ty.to_le_bytes().to_vec(), offset.to_le_bytes().to_vec()].concat()
        };
        let mut out = [
            b"GGUF".to_vec(),
            3u32.to_le_bytes().to_vec(),
            3u64.to_le_bytes().to_vec(),
            (1 + keys.len() as u64).to_le_bytes().to_vec(),
            kv,
        ]
        .concat();
        // ggml lists dims innermost first: [2, 4] is HF's [4, 2].
        out.extend(tensor("token_embd.weight", &[2, 4], 0, 0));
        out.extend(tensor("output_norm.weight", &[2], 0, 32));
        out.extend(tensor("blk.0.ffn_up.weight", &[64, 3], 8, 64)); // Q8_0
        out.resize(out.len().div_ceil(32) * 32, 0);
        (0..8).for_each(|i| out.extend((i as f32).to_le_bytes()));
        [1.5f32, 0.25].iter().for_each(|v| out.extend(v.to_le_bytes()));
        out.resize(out.len() + 24, 0); // to offset 64
        for block in 0..6u32 {
            // A Q8_0 block: its f16 scale, then 32 signed quants (-50 ..= 50).
            out.extend(half::f16::from_f32(0.5 + block as f32).to_le_bytes());
            out.extend(
                (0..32u32).map(|j| ((j * 7 + block * 13) % 101) as i32 - 50).map(|q| q as i8 as u8),
            );
        }
        out
    }

    #[test]
    fn a_gguf_path_opens_through_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tiny.gguf");
        std::fs::write(&file, tiny_gguf()).unwrap();
        for path in [dir.path(), file.as_path()] {
            let source = CheckpointSource::detect(path).unwrap();
            assert!(matches!(&source, CheckpointSource::Gguf(f) if *f == file), "{source:?}");
            let (loaded, ckpt) = source.open().unwrap();
            assert_eq!(loaded.config, source.config().unwrap().config);
            assert_eq!((loaded.config.vocab_size, loaded.config.hidden_size), (4, 2));
            assert_eq!(ckpt.tensors["model.embed_tokens.weight"].shape, [4, 2]);
            assert_eq!(
                ckpt.to_f32("model.embed_tokens.weight").unwrap(),
                (0..8).map(|i| i as f32).collect::<Vec<_>>()
            );
            assert_eq!(
                ckpt.gather_rows_f32("model.embed_tokens.weight", &[3, 0]).unwrap(),
                [6.0, 7.0, 0.0, 1.0]
            );
            // Quantised rows are dequantised row by row, as the whole table decodes.
            let up = "model.layers.0.mlp.up_proj.weight";
            let all = ckpt.to_f32(up).unwrap();
            let rows = ckpt.gather_rows_f32(up, &[2, 0, 2]).unwrap();
            let want = [&all[128..192], &all[..64], &all[128..192]].concat();
            assert_eq!(rows, want);
            assert!(all.iter().any(|&v| v != 0.0) && all[64..128] != all[..64]);
            assert_eq!(
                ckpt.to_f32("model.norm.weight").unwrap(),
                [0.5, -0.75],
                "the folded-in 1 is subtracted"
            );
            assert_eq!(
                ckpt.bytes("model.norm.weight"),
                None,
                "ggml blocks are not safetensors bytes"
            );
            assert_eq!(ckpt.file_of("model.norm.weight"), Some(file.as_path()));
        }
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let source = CheckpointSource::detect(dir.path()).unwrap();
        assert!(matches!(source, CheckpointSource::Safetensors(_)), "config.json wins: {source:?}");
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        std::fs::write(dir.path().join("other.gguf"), tiny_gguf()).unwrap();
        let e = CheckpointSource::detect(dir.path()).unwrap_err().to_string();
        assert!(e.contains("other.gguf") && e.contains("tiny.gguf"), "{e}");
    }

    #[test]
    fn random_sources_draw_every_tensor_of_their_config() {
        let dense =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense/config.json");
        let config = Box::new(Gemma4TextConfig::from_file(&dense).unwrap().config);
        let source = CheckpointSource::Random {
            config: config.clone(),
            init: RandomInit { seed: 3, std: 0.02 },
        };
        let (loaded, ckpt) = source.open().unwrap();
        assert_eq!(loaded.config, *config);
        assert_eq!(ckpt.tensors.len(), crate::weights::expected_tensors(&config, "model.").len());
        assert_eq!(ckpt.file_of("model.norm.weight"), None);
        assert_eq!(ckpt.to_f32("model.norm.weight").unwrap().len(), config.hidden_size);
    }
}
