//! The files of a Hugging Face checkpoint: `model.safetensors`, or the shards listed by
//! `model.safetensors.index.json` — exactly the files transformers would load, never every
//! `*.safetensors` lying in the directory. Files are memory-mapped; tensors are decoded from
//! bf16/f16/f32 on demand, one at a time, so loading never holds two copies of the checkpoint.
//!
//! A GGUF file ([`Checkpoint::open_gguf`]) is another source behind the same interface: its
//! tensors are listed under their HF names (`gguf::hf_name`) and dequantised on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};
use crate::gguf;
use crate::random::RandomInit;
use crate::weights::expected_tensors;
use crate::quant::{GgmlType, dequantize};

/// Name of the single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor's place in a mapped file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The stored dtype; `F32` (what it decodes to) for GGUF tensors, see `ggml`.
    pub dtype: Dtype,
    /// GGUF tensors: the stored ggml type and whether 1 is subtracted (llama.cpp's `1 + w` norms).
    pub ggml: Option<(GgmlType, bool)>,
    pub shape: Vec<usize>,
    file: usize,
    /// Byte range inside the file (header included in the offset).
    start: usize,
    end: usize,
}

/// A mapped file.
#[derive(Debug)]
struct Mapped {
    path: PathBuf,
    map: Mmap,
}

/// All tensors of a checkpoint, by name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    files: Arc<Vec<Mapped>>,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Computed weights (benchmarks): every tensor is drawn, none is read.
    random: Option<RandomInit>,
}

impl Checkpoint {
    /// Open `model.safetensors`, or the shards named in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join(INDEX_FILE);
        let single = dir.join(SINGLE_FILE);
        let (paths, weight_map) = if index.is_file() {
            let (paths, map) = read_index(&index)?;
            (paths, Some(map))
        } else if single.is_file() {
            (vec![single], None)
        } else {
            return Err(ModelError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory"),
                ),
            });
        };
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let map = map_file(path)?;
            let st = SafeTensors::deserialize(&map)
                .map_err(|e| ModelError::Safetensors { path: path.clone(), reason: e.to_string() })?;
            for (name, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
                let info = TensorInfo {
                    ggml: None,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    file: fi,
                    start,
                    end: start + view.data().len(),
                };
                if tensors.insert(name.clone(), info).is_some() {
                    return Err(ModelError::Tensor { name, reason: format!("stored twice (again in {})", path.display()) });
                }
            }
            files.push(Mapped { path: path.clone(), map });
        }
        if let Some(map) = weight_map {
            for (name, file) in map {
                if !tensors.contains_key(&name) {
                    return Err(ModelError::Tensor { name, reason: format!("listed in {INDEX_FILE} (in {file}) but not stored there") });
                }
            }
        }
        Ok(Self { dir: dir.to_owned(), files: Arc::new(files), tensors, random: None })
    }

    /// Open a GGUF file: the tensors under their HF names, and the HF `config.json` its
    /// metadata describes. Tensors of a type we cannot dequantise are an error naming both.
    pub fn open_gguf(path: &Path) -> Result<(Self, serde_json::Value)> {
        let map = map_file(path)?;
        let header = gguf::parse(&map, path)?;
        let config = gguf::config_json(&header, path)?;
        let mut tensors = BTreeMap::new();
        for t in header.tensors {
            let (name, is_norm) = gguf::hf_name(&t.name).ok_or_else(|| ModelError::Tensor {
                name: t.name.clone(),
                reason: format!("in {}: no HF name for this llama.cpp tensor", path.display()),
            })?;
            let ty = t.ggml_type.map_err(|ty| ModelError::Tensor {
                name: t.name.clone(),
                reason: format!("type {ty} cannot be dequantised (supported: F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K)"),
            })?;
            let info = TensorInfo { dtype: Dtype::F32, ggml: Some((ty, is_norm)), shape: t.shape, file: 0, start: t.start, end: t.end };
            if tensors.insert(name.clone(), info).is_some() {
                return Err(ModelError::Tensor { name, reason: format!("stored twice in {}", path.display()) });
            }
        }
        let files = vec![Mapped { path: path.to_owned(), map }];
        Ok((Self { dir: path.to_owned(), files: Arc::new(files), tensors, random: None }, config))
    }

    /// A checkpoint of random weights with every tensor a `cfg` checkpoint holds, under `model.`.
    pub fn random(cfg: &Gemma4TextConfig, init: RandomInit) -> Self {
        let tensors = expected_tensors(cfg, "model.")
            .into_iter()
            .map(|(name, shape)| (name, TensorInfo { dtype: Dtype::F32, ggml: None, shape, file: 0, start: 0, end: 0 }))
            .collect();
        Self { dir: PathBuf::from(format!("<random weights, seed {}>", init.seed)), files: Arc::new(Vec::new()), tensors, random: Some(init) }
    }

    /// The file a tensor lives in (for messages).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).and_then(|t| self.files.get(t.file)).map(|f| f.path.as_path())
    }

    /// The raw little-endian bytes of a safetensors tensor (`None` for GGUF tensors, whose
    /// bytes are ggml blocks, not `dtype` values).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensors.get(name).filter(|t| t.ggml.is_none() && self.random.is_none())?;
        self.raw(name)
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        let t = self.tensors.get(name)?;
        Some(&self.files.get(t.file)?.map[t.start..t.end])
    }

    /// Decode a tensor to f32 values (row-major), from f32, f16 or bf16.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensors.get(name).ok_or_else(|| ModelError::MissingTensor { name: name.into(), dir: self.dir.clone() })?;
        if let Some(init) = &self.random {
            return Ok(init.values(name, 0..info.shape.iter().product()));
        }
        let bytes = self.raw(name).unwrap_or_default();
        match info.ggml {
            Some((ty, minus_one)) => {
                let mut v = dequantize(ty, bytes);
                if minus_one {
                    v.iter_mut().for_each(|x| *x -= 1.0);
                }
                Ok(v)
            }
            None => decode_f32(name, info.dtype, bytes),
        }
    }

    /// Decode rows `ids` of a 2-D tensor `[rows, cols]` to f32 (used for the PLE table, which
    /// stays on the host: only the rows of the current tokens are ever read).
    pub fn gather_rows_f32(&self, name: &str, ids: &[usize]) -> Result<Vec<f32>> {
        let info = self.tensors.get(name).ok_or_else(|| ModelError::MissingTensor { name: name.into(), dir: self.dir.clone() })?;
        let (rows, cols) = match info.shape.as_slice() {
            [r, c] => (*r, *c),
            s => return Err(ModelError::Tensor { name: name.into(), reason: format!("expected 2 dims, found {s:?}") }),
        };
        if let Some(&id) = ids.iter().find(|&&id| id >= rows) {
            return Err(ModelError::Input(format!("token id {id} out of range for {name} ({rows} rows)")));
        }
        // Rows in parallel: on E2B a batch of 8192 tokens gathers 73 M values per step.
        let mut out = vec![0f32; ids.len() * cols];
        if let Some(init) = &self.random {
            out.par_chunks_mut(cols).zip(ids.par_iter()).for_each(|(row, &id)| init.fill(name, id * cols, row));
            return Ok(out);
        }
        if info.ggml.is_some() {
            let all = self.to_f32(name)?;
            out.par_chunks_mut(cols).zip(ids.par_iter()).for_each(|(row, &id)| row.copy_from_slice(&all[id * cols..(id + 1) * cols]));
            return Ok(out);
        }
        let width = dtype_size(name, info.dtype)?;
        let bytes = self.bytes(name).unwrap_or_default();
        let dtype = info.dtype;
        out.par_chunks_mut(cols).zip(ids.par_iter()).for_each(|(row, &id)| decode_into(dtype, &bytes[id * cols * width..(id + 1) * cols * width], row));
        Ok(out)
    }
}

fn dtype_size(name: &str, dtype: Dtype) -> Result<usize> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        other => Err(ModelError::Tensor { name: name.into(), reason: format!("dtype {other:?} is not supported (expected F32, F16 or BF16)") }),
    }
}

/// Decode little-endian f32/f16/bf16 `bytes` (a checked dtype) into `out`.
fn decode_into(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).zip(out).for_each(|(c, v)| *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        Dtype::F16 => bytes.chunks_exact(2).zip(out).for_each(|(c, v)| *v = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        _ => bytes.chunks_exact(2).zip(out).for_each(|(c, v)| *v = half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
    }
}

fn decode_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let mut out = vec![0f32; bytes.len() / dtype_size(name, dtype)?];
    decode_into(dtype, bytes, &mut out);
    Ok(out)
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
    // SAFETY: the mapping is read-only; a checkpoint modified while we read it is outside our
    // contract (as for every mmap-based loader: safetensors, candle, mlx).
    unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io { path: path.to_owned(), source })
}

/// The shard files (deduplicated, sorted) and the name → file map of an index.
fn read_index(index: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io { path: index.to_owned(), source })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index.to_owned(), source })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Safetensors { path: index.to_owned(), reason: "no `weight_map` object".into() })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names = BTreeMap::new();
    let mut files = BTreeSet::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| ModelError::Safetensors {
            path: index.to_owned(),
            reason: format!("weight_map entry for {name} is not a file name"),
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::Safetensors { path: index.to_owned(), reason: format!("shard name {file:?} must be a plain file name in the model directory") });
        }
        files.insert(file.to_owned());
        names.insert(name.clone(), file.to_owned());
    }
    Ok((files.into_iter().map(|f| dir.join(f)).collect(), names))
}
