//! The tensors of a checkpoint, by HF name, from one of three [`Storage`]s: the files of a
//! Hugging Face checkpoint (`model.safetensors`, or the shards listed by
//! `model.safetensors.index.json` — exactly the files transformers would load, never every
//! `*.safetensors` lying in the directory), a GGUF file (`formats::gguf`: its tensors listed
//! under their HF names and dequantised on demand), or random values (benchmarks). Files are
//! memory-mapped; tensors are decoded to f32 on demand, one at a time, so loading never holds
//! two copies of the checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};
use crate::formats::quant::{GgmlType, dequantize};
use crate::random::RandomInit;
use crate::weights::expected_tensors;

/// Name of the single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor's place in a checkpoint.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The stored dtype; `F32` (what they decode to) for GGUF and random tensors.
    pub dtype: Dtype,
    /// The stored (HF) shape.
    pub shape: Vec<usize>,
    /// Index of the file in the storage's list (safetensors shards; 0 for GGUF).
    pub(crate) file: usize,
    /// Byte range inside the file (header included in the offset; empty for random tensors).
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl TensorInfo {
    /// How many bytes the tensor's values take in its file.
    pub fn byte_len(&self) -> usize {
        self.end - self.start
    }
}

/// A mapped file.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) path: PathBuf,
    pub(crate) map: Mmap,
}

/// Where a checkpoint's values come from; every read matches on it.
#[derive(Debug)]
pub(crate) enum Storage {
    /// `model.safetensors` or the shards of an index: f32/f16/bf16 values as stored.
    Safetensors { files: Vec<Mapped> },
    /// One GGUF file: ggml blocks, with each tensor's ggml type and whether 1 is subtracted
    /// (llama.cpp's `1 + w` norms).
    Gguf { file: Mapped, types: BTreeMap<String, (GgmlType, bool)> },
    /// Computed weights (benchmarks): every tensor is drawn, none is read.
    Random(RandomInit),
}

/// All tensors of a checkpoint, by name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The directory (or GGUF file) it was opened from; a description for random weights.
    pub dir: PathBuf,
    /// Every stored tensor, by its HF name.
    pub tensors: BTreeMap<String, TensorInfo>,
    storage: Arc<Storage>,
}

impl Checkpoint {
    /// A checkpoint from its parts (the GGUF reader builds one).
    pub(crate) fn from_parts(
        dir: PathBuf,
        tensors: BTreeMap<String, TensorInfo>,
        storage: Storage,
    ) -> Self {
        Self { dir, tensors, storage: Arc::new(storage) }
    }

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
            list_tensors(&map, path, fi, &mut tensors)?;
            files.push(Mapped { path: path.clone(), map });
        }
        if let Some(map) = weight_map {
            for (name, file) in map {
                if !tensors.contains_key(&name) {
                    let reason = format!("listed in {INDEX_FILE} (in {file}) but not stored there");
                    return Err(ModelError::Tensor { name, reason });
                }
            }
        }
        Ok(Self::from_parts(dir.to_owned(), tensors, Storage::Safetensors { files }))
    }

    /// The tensors listed by the header of the safetensors file `path`, held in `bytes`
    /// (what [`Checkpoint::open`] reads from each file; errors name the file or the tensor).
    pub fn list_safetensors(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, TensorInfo>> {
        let mut tensors = BTreeMap::new();
        list_tensors(bytes, path, 0, &mut tensors)?;
        Ok(tensors)
    }

    /// A single-file safetensors checkpoint held in `bytes`, as if read from `path`
    /// (fuzzing and tests: the same listing and reads as a mapped file, without one).
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let io = |source| ModelError::Io { path: path.to_owned(), source };
        let mut anon = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(io)?;
        anon[..bytes.len()].copy_from_slice(bytes);
        let map = anon.make_read_only().map_err(io)?;
        let tensors = Self::list_safetensors(&map[..bytes.len()], path)?;
        let files = vec![Mapped { path: path.to_owned(), map }];
        Ok(Self::from_parts(path.to_owned(), tensors, Storage::Safetensors { files }))
    }

    /// A checkpoint of random weights with every tensor a `cfg` checkpoint holds, under `model.`.
    pub fn random(cfg: &Gemma4TextConfig, init: RandomInit) -> Self {
        let tensors = expected_tensors(cfg, "model.")
            .into_iter()
            .map(|(name, shape)| {
                (name, TensorInfo { dtype: Dtype::F32, shape, file: 0, start: 0, end: 0 })
            })
            .collect();
        let dir = PathBuf::from(format!("<random weights, seed {}>", init.seed));
        Self::from_parts(dir, tensors, Storage::Random(init))
    }

    /// The file a tensor lives in (for messages; `None` for random weights).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        let t = self.tensors.get(name)?;
        match &*self.storage {
            Storage::Safetensors { files } => files.get(t.file).map(|f| f.path.as_path()),
            Storage::Gguf { file, .. } => Some(file.path.as_path()),
            Storage::Random(_) => None,
        }
    }

    /// The raw little-endian bytes of a safetensors tensor (`None` for GGUF tensors, whose
    /// bytes are ggml blocks, not `dtype` values, and for random ones).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let t = self.tensors.get(name)?;
        match &*self.storage {
            Storage::Safetensors { files } => Some(&files.get(t.file)?.map[t.start..t.end]),
            Storage::Gguf { .. } | Storage::Random(_) => None,
        }
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.into(), dir: self.dir.clone() })
    }

    /// Decode a tensor to f32 values (row-major), from f32, f16, bf16 or a ggml type.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        match &*self.storage {
            Storage::Safetensors { .. } => {
                decode_f32(name, info.dtype, self.bytes(name).unwrap_or_default())
            }
            Storage::Gguf { file, types } => {
                let (ty, minus_one) =
                    types.get(name).copied().ok_or_else(|| ModelError::Tensor {
                        name: name.into(),
                        reason: format!("no ggml type recorded in {}", file.path.display()),
                    })?;
                Ok(decode_gguf(ty, minus_one, &file.map[info.start..info.end]))
            }
            Storage::Random(init) => Ok(init.values(name, 0..info.shape.iter().product())),
        }
    }

    /// Decode rows `ids` of a 2-D tensor `[rows, cols]` to f32.
    pub fn gather_rows_f32(&self, name: &str, ids: &[usize]) -> Result<Vec<f32>> {
        let cols = self.info(name)?.shape.last().copied().unwrap_or(0);
        let mut out = vec![0f32; ids.len() * cols];
        self.gather_rows_with(name, ids, &mut out, |row, o| o.copy_from_slice(row))?;
        Ok(out)
    }

    /// Rows `ids` of a 2-D tensor `[rows, cols]` (the PLE table, which stays on the host: only
    /// the rows of the current tokens are ever read), in parallel: each row decoded to f32 and
    /// handed to `emit` with its share of `out` (`out.len() / ids.len()` values, e.g. the bytes
    /// of the row scaled and rounded to the dtype it is uploaded in).
    pub fn gather_rows_with<T: Send>(
        &self,
        name: &str,
        ids: &[usize],
        out: &mut [T],
        emit: impl Fn(&mut [f32], &mut [T]) + Sync,
    ) -> Result<()> {
        let info = self.info(name)?;
        let (rows, cols) = match info.shape.as_slice() {
            [r, c] => (*r, *c),
            s => {
                return Err(ModelError::Tensor {
                    name: name.into(),
                    reason: format!("expected 2 dims, found {s:?}"),
                });
            }
        };
        if let Some(&id) = ids.iter().find(|&&id| id >= rows) {
            return Err(ModelError::Input(format!(
                "token id {id} out of range for {name} ({rows} rows)"
            )));
        }
        if ids.is_empty() || cols == 0 {
            return Ok(());
        }
        // Rows in parallel: on E2B a batch of 8192 tokens gathers 73 M values per step.
        let rows_out = out.par_chunks_mut(out.len() / ids.len()).zip(ids.par_iter());
        let scratch = || vec![0f32; cols];
        match &*self.storage {
            Storage::Safetensors { .. } => {
                let width = dtype_size(name, info.dtype)?;
                let bytes = self.bytes(name).unwrap_or_default();
                let dtype = info.dtype;
                rows_out.for_each_init(scratch, |f32s, (row, &id)| {
                    decode_into(dtype, &bytes[id * cols * width..(id + 1) * cols * width], f32s);
                    emit(f32s, row);
                });
            }
            Storage::Gguf { file, types } => match types.get(name) {
                // Rows of whole ggml blocks (ggml quantises along a row): only the rows asked
                // for are dequantised, not the table (E2B's PLE table: 2.3 G values a step).
                Some(&(ty, minus_one))
                    if ty.bytes_for(cols).is_some_and(|w| w * rows == info.end - info.start) =>
                {
                    let bytes = &file.map[info.start..info.end];
                    let width = bytes.len() / rows;
                    rows_out.for_each_init(scratch, |f32s, (row, &id)| {
                        let values =
                            decode_gguf(ty, minus_one, &bytes[id * width..(id + 1) * width]);
                        f32s.copy_from_slice(&values);
                        emit(f32s, row);
                    });
                }
                _ => {
                    let all = self.to_f32(name)?;
                    rows_out.for_each_init(scratch, |f32s, (row, &id)| {
                        f32s.copy_from_slice(&all[id * cols..(id + 1) * cols]);
                        emit(f32s, row);
                    });
                }
            },
            Storage::Random(init) => rows_out.for_each_init(scratch, |f32s, (row, &id)| {
                init.fill(name, id * cols, f32s);
                emit(f32s, row);
            }),
        }
        Ok(())
    }
}

/// Add the tensors of the safetensors file `path` (file `fi`, mapped as `map`) to `tensors`.
fn list_tensors(
    map: &[u8],
    path: &Path,
    fi: usize,
    tensors: &mut BTreeMap<String, TensorInfo>,
) -> Result<()> {
    let st = SafeTensors::deserialize(map)
        .map_err(|e| ModelError::Safetensors { path: path.to_owned(), reason: e.to_string() })?;
    for (name, view) in st.tensors() {
        if elements(view.shape()).is_none() {
            let reason = format!("in {}: shape {:?} overflows", path.display(), view.shape());
            return Err(ModelError::Tensor { name, reason });
        }
        let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
        let end = start + view.data().len();
        let info =
            TensorInfo { dtype: view.dtype(), shape: view.shape().to_vec(), file: fi, start, end };
        if tensors.insert(name.clone(), info).is_some() {
            let reason = format!("stored twice (again in {})", path.display());
            return Err(ModelError::Tensor { name, reason });
        }
    }
    Ok(())
}

/// The number of elements of `shape`, `None` if multiplying its dimensions overflows in any
/// order (zeros left out: a `[0, 2^40, 2^40]` overflows whoever multiplies right to left).
pub(crate) fn elements(shape: &[usize]) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1usize, |n, &d| n.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

fn dtype_size(name: &str, dtype: Dtype) -> Result<usize> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        other => Err(ModelError::Tensor {
            name: name.into(),
            reason: format!("dtype {other:?} is not supported (expected F32, F16 or BF16)"),
        }),
    }
}

/// Decode little-endian f32/f16/bf16 `bytes` (a checked dtype) into `out`.
fn decode_into(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .zip(out)
            .for_each(|(c, v)| *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .zip(out)
            .for_each(|(c, v)| *v = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        _ => bytes
            .chunks_exact(2)
            .zip(out)
            .for_each(|(c, v)| *v = half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
    }
}

/// ggml blocks of type `ty` to f32, less the 1 llama.cpp folds into norms where `minus_one`.
fn decode_gguf(ty: GgmlType, minus_one: bool, bytes: &[u8]) -> Vec<f32> {
    let mut v = dequantize(ty, bytes);
    if minus_one {
        v.iter_mut().for_each(|x| *x -= 1.0);
    }
    v
}

fn decode_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let mut out = vec![0f32; bytes.len() / dtype_size(name, dtype)?];
    decode_into(dtype, bytes, &mut out);
    Ok(out)
}

pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let file =
        File::open(path).map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
    // SAFETY: the mapping is read-only; a checkpoint modified while we read it is outside our
    // contract (as for every mmap-based loader: safetensors, candle, mlx).
    unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io { path: path.to_owned(), source })
}

/// The shard files (deduplicated, sorted) and the name → file map of an index.
fn read_index(index: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(index)
        .map_err(|source| ModelError::Io { path: index.to_owned(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|source| ModelError::Json { path: index.to_owned(), source })?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
        ModelError::Safetensors { path: index.to_owned(), reason: "no `weight_map` object".into() }
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names = BTreeMap::new();
    let mut files = BTreeSet::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| ModelError::Safetensors {
            path: index.to_owned(),
            reason: format!("weight_map entry for {name} is not a file name"),
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ModelError::Safetensors {
                path: index.to_owned(),
                reason: format!(
                    "shard name {file:?} must be a plain file name in the model directory"
                ),
            });
        }
        files.insert(file.to_owned());
        names.insert(name.clone(), file.to_owned());
    }
    Ok((files.into_iter().map(|f| dir.join(f)).collect(), names))
}
