//! Fuse into a GGUF file llama.cpp, Ollama and LM Studio load: the base (safetensors or GGUF)
//! with the adapter merged as [`super::fuse`] merges it (`W + scale·B·A` in f32), then renamed,
//! edited and quantised as `gemma4_model::gguf_out` plans (llama.cpp's names, norm convention,
//! block types). Without an adapter it converts the base.
//!
//! The plan is made, and every refusal raised, before the file is opened; the file is streamed
//! tensor by tensor (one tensor in memory, plus its merge) into an [`AtomicFile`] and appears
//! only when complete. Every quantised tensor is decoded back through our own dequantiser.

use std::io::Write;
use std::path::Path;

use burn::tensor::DType;
use gemma4_model::CheckpointSource;
use gemma4_model::gguf_out::{
    ExportQuant, ExportTensor, HeaderTensor, VocabSource, header_bytes, padding, plan,
    quantize_checked, vocab_metadata, vocab_of_gguf, vocab_of_tokenizer_json,
};
use gemma4_store::AtomicFile;

use super::merge::delta;
use super::plan::merge_targets;
use crate::adapter::LoraAdapter;
use crate::error::{LoraError, Result};

/// How to write the GGUF.
#[derive(Clone, Debug)]
pub struct GgufOptions {
    /// Block type of the weight matrices (1-D tensors stay F32).
    pub quant: ExportQuant,
    /// `general.name`.
    pub name: String,
}

/// What [`fuse_gguf`] wrote.
#[derive(Clone, Debug, Default)]
pub struct GgufReport {
    /// llama.cpp architecture (`gemma3`, `gemma4`).
    pub arch: String,
    /// Tensors written, and how many carry an adapter delta.
    pub tensors: usize,
    pub merged: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Matrices written as F16 because their rows are not whole blocks of the quant type.
    pub fallbacks: Vec<String>,
}

/// The tokenizer keys for `source`: a GGUF base's own; a directory's `tokenizer.json`
/// converted; none (token ids only) for a directory without one.
fn vocab(
    source: &CheckpointSource,
    arch: &str,
    vocab_size: usize,
) -> Result<Vec<(String, gemma4_model::gguf_out::GgufValue)>> {
    match source {
        CheckpointSource::Gguf(path) => Ok(vocab_of_gguf(path, arch)?),
        CheckpointSource::Safetensors(dir) if dir.join("tokenizer.json").is_file() => {
            Ok(vocab_of_tokenizer_json(dir, arch, vocab_size)?)
        }
        _ => Ok(vocab_metadata(VocabSource::None, arch, vocab_size)?),
    }
}

/// Fuse `adapter` (or nothing) into the base `source` and write the GGUF file `out`.
pub fn fuse_gguf(
    source: &CheckpointSource,
    adapter: Option<&LoraAdapter>,
    out: &Path,
    opts: &GgufOptions,
) -> Result<GgufReport> {
    let (loaded, ckpt) = source.open()?;
    let cfg = &loaded.config;
    let merges = match adapter {
        Some(a) => merge_targets(&ckpt, a)?,
        None => Default::default(),
    };
    // The architecture first (a refusal names the feature), then the tokenizer.
    let probe = plan(cfg, &ckpt.tensors, opts.quant, &opts.name, Vec::new())?;
    let vocab = vocab(source, probe.arch, cfg.vocab_size)?;
    let plan = plan(cfg, &ckpt.tensors, opts.quant, &opts.name, vocab)?;
    let header: Vec<HeaderTensor> = plan
        .tensors
        .iter()
        .map(|t| HeaderTensor { name: &t.name, shape: &t.shape, ty: t.ty })
        .collect();
    let (head, lens) = header_bytes(&plan.metadata, &header).ok_or_else(|| LoraError::Adapter {
        path: out.to_owned(),
        reason: "a tensor is not a whole number of blocks of its type".into(),
    })?;
    let scale = adapter.map_or(1.0, LoraAdapter::scale);
    let io = |source| LoraError::Io { path: out.to_owned(), source };
    let mut file = AtomicFile::create(out)?;
    file.write_all(&head).map_err(io)?;
    let mut bytes = head.len() as u64;
    for (t, &len) in plan.tensors.iter().zip(&lens) {
        let module = t.source.as_ref().and_then(|s| merges.get(s)).copied();
        let data = tensor_bytes(&ckpt, t, module, scale)?;
        debug_assert_eq!(data.len(), len);
        file.write_all(&data).map_err(io)?;
        file.write_all(&vec![0u8; padding(len)]).map_err(io)?;
        bytes += (len + padding(len)) as u64;
    }
    file.commit()?;
    Ok(GgufReport {
        arch: plan.arch.into(),
        tensors: plan.tensors.len(),
        merged: merges.len(),
        bytes,
        fallbacks: plan.fallbacks,
    })
}

/// One tensor's bytes: read (dequantised), merged, edited, quantised and checked back.
fn tensor_bytes(
    ckpt: &gemma4_model::Checkpoint,
    t: &ExportTensor,
    module: Option<&crate::adapter::LoraModule>,
    scale: f64,
) -> Result<Vec<u8>> {
    let mut values = match (&t.values, &t.source) {
        (Some(v), _) => v.clone(),
        (None, Some(src)) => ckpt.to_f32(src)?,
        (None, None) => Vec::new(),
    };
    if let Some(m) = module {
        let d = delta(m, None, scale).cast(DType::F32).into_data();
        let d = d.try_to_vec_as::<f32>().map_err(|e| LoraError::Adapter {
            path: ckpt.dir.clone(),
            reason: format!("tensor {}: reading the adapter delta: {e:?}", t.name),
        })?;
        if d.len() != values.len() {
            return Err(LoraError::Target(format!(
                "tensor {}: delta has {} values for {} weights",
                t.name,
                d.len(),
                values.len()
            )));
        }
        values.iter_mut().zip(&d).for_each(|(w, d)| *w += d);
    }
    t.edit.apply(&mut values);
    Ok(quantize_checked(&t.name, t.ty, &values)?)
}
