//! Fuse a LoRA adapter into its base checkpoint: a new checkpoint directory that transformers
//! loads as-is, with the base's tensor names, shapes and layout (vision/audio towers included).
//!
//! Each adapted weight becomes `W' = W + scale·B·A` in f32 — PEFT's `merge_and_unload()`; for
//! MoE experts `W'_e = W_e + scale·B_e·A_e` with the factors of `LoraModule::factors` (PEFT
//! `ParamWrapper` layout) — then is cast back to the source dtype (or the requested one).
//! Every other tensor is copied byte for byte, or converted when a dtype is requested.
//!
//! Streaming: the base is memory-mapped ([`Checkpoint`]) and each output shard is written by a
//! [`StreamingWriter`] tensor by tensor (experts one expert at a time, conversions in chunks),
//! so memory stays at about one tensor plus its f32 merge whatever the checkpoint's size.
//! Shards follow HF `save_pretrained`: one `model.safetensors`, or above `max_shard_size`
//! `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`. The directory is staged
//! beside `<out>` ([`StagedDir`]) and renamed to `<out>` at the end: on any error nothing is left
//! at `<out>`.
//!
//! `gguf.rs` writes the same merge as one GGUF file for llama.cpp instead.
//!
//! Here: the options, the report and the driver; `plan.rs` decides what goes where, `merge.rs`
//! streams each tensor, `files.rs` writes the index and side files.

use std::path::Path;

use gemma4_model::{Checkpoint, SINGLE_FILE, WeightDtype};
use gemma4_store::{StagedDir, StreamingWriter};

use crate::adapter::LoraAdapter;
use crate::error::{LoraError, Result};

mod files;
pub mod gguf;
mod merge;
mod plan;

pub use files::SIDE_FILES;
use files::{copy_side_files, io, write_index};
use merge::write_tensor;
use plan::{merge_targets, plan, split};

/// HF's default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 5_000_000_000;

/// How to fuse.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// Convert every float tensor to this dtype (and set `dtype` in config.json); `None` keeps
    /// each tensor's dtype in the base (merged ones are cast back to it).
    pub dtype: Option<WeightDtype>,
    /// Bytes of tensor data per shard before a new shard starts (HF semantics: a tensor larger
    /// than this gets a shard of its own).
    pub max_shard_size: u64,
    /// Replace an existing non-empty output directory.
    pub force: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        Self { dtype: None, max_shard_size: DEFAULT_MAX_SHARD_SIZE, force: false }
    }
}

/// What [`fuse`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// Tensors that received an adapter delta.
    pub merged: usize,
    /// Tensors copied (byte for byte, or converted to the requested dtype).
    pub copied: usize,
    /// Weight files written (1 = a single `model.safetensors`).
    pub shards: usize,
    /// Tensor data bytes written (the index's `metadata.total_size`).
    pub bytes: u64,
    /// Side files copied (config, tokenizer, templates, ...).
    pub files: Vec<String>,
}

/// Fuse `adapter` into the checkpoint in `base_dir`, writing a new checkpoint directory `out`.
pub fn fuse(
    base_dir: &Path,
    adapter: &LoraAdapter,
    out: &Path,
    opts: &FuseOptions,
) -> Result<FuseReport> {
    check_out_dir(base_dir, out, opts.force)?;
    if adapter.modules.is_empty() {
        return Err(LoraError::Target("the adapter has no modules: nothing to fuse".into()));
    }
    if !base_dir.join("config.json").is_file() {
        let source = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no config.json in the model directory",
        );
        return Err(LoraError::Io { path: base_dir.to_owned(), source });
    }
    let ckpt = Checkpoint::open(base_dir)?;
    let merges = merge_targets(&ckpt, adapter)?;
    let plan = plan(&ckpt, &merges, opts.dtype)?;
    let shards = split(&plan, opts.max_shard_size);
    let staging = StagedDir::begin(out)?;
    let names: Vec<String> = match shards.len() {
        1 => vec![SINGLE_FILE.to_owned()],
        n => (1..=n).map(|k| format!("model-{k:05}-of-{n:05}.safetensors")).collect(),
    };
    let scale = adapter.scale();
    for (shard, file) in shards.iter().zip(&names) {
        let path = staging.path().join(file);
        let mut writer = StreamingWriter::create(
            &path,
            shard.iter().map(|p| p.spec.clone()).collect(),
            &[("format", "pt")],
        )?;
        for p in shard.iter() {
            write_tensor(&mut writer, &ckpt, p, merges.get(&p.spec.name).copied(), scale, &path)?;
        }
        writer.finish()?;
    }
    let bytes = plan.iter().map(|p| p.spec.len as u64).sum();
    if shards.len() > 1 {
        write_index(staging.path(), &shards, &names, bytes)?;
    }
    let files = copy_side_files(base_dir, staging.path(), opts.dtype)?;
    staging.commit()?;
    Ok(FuseReport {
        merged: merges.len(),
        copied: plan.len() - merges.len(),
        shards: shards.len(),
        bytes,
        files,
    })
}

/// Refuse an output that exists and is not an empty directory (unless `force`), and one that
/// is or contains the base model directory.
pub fn check_out_dir(base_dir: &Path, out: &Path, force: bool) -> Result<()> {
    let err = |reason: &str| LoraError::Io {
        path: out.to_owned(),
        source: std::io::Error::other(reason.to_owned()),
    };
    if out.file_name().is_none() {
        return Err(err("the output must name a directory"));
    }
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(err("exists and is not a directory"));
    }
    let (base, out_c) = (base_dir.canonicalize(), out.canonicalize());
    if let (Ok(base), Ok(out_c)) = (base, out_c)
        && base.starts_with(&out_c)
    {
        return Err(err("is (or contains) the base model directory"));
    }
    let mut entries = std::fs::read_dir(out).map_err(io(out))?;
    if !force && entries.next().is_some() {
        return Err(err("exists and is not empty (hint: pass --force to replace it)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_non_empty_output_is_refused_without_force() {
        let base = tempfile::tempdir().unwrap();
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("fused");
        check_out_dir(base.path(), &out, false).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_out_dir(base.path(), &out, false).unwrap(); // empty is fine
        std::fs::write(out.join("x"), "x").unwrap();
        let e = check_out_dir(base.path(), &out, false).unwrap_err().to_string();
        assert!(e.contains("fused") && e.contains("--force"), "{e}");
        check_out_dir(base.path(), &out, true).unwrap();
        // Never the base directory itself (or a directory holding it), even with force.
        assert!(check_out_dir(base.path(), base.path(), true).is_err());
        std::fs::create_dir(out.join("model")).unwrap();
        assert!(check_out_dir(&out.join("model"), &out, true).is_err());
    }
}
