//! The loader that follows THE weight-name table (`table.rs`): it reads tensors by table name,
//! checks their HF shapes, applies each row's transform on the host, converts them to the load's
//! dtype and uploads them, cut into device pieces where a tensor exceeds the load's piece limit.
//! After loading, every tensor in the checkpoint has been used or matched a drop rule — anything
//! else is an error naming it.

use std::collections::BTreeSet;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::checkpoint::Checkpoint;
use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};
use crate::load::LoadOptions;
use crate::pieces::rows_per_piece;

mod table;

pub use table::{
    DROPPED, DROPPED_IN_SHARED_LAYERS, Transform, classify, expected_tensors, table_row,
};

/// Text-weight prefixes we recognise, most specific first.
const PREFIXES: &[&str] = &["model.language_model.", "model."];

/// What loading did with the checkpoint's tensors.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// How many checkpoint tensors the model read.
    pub used: usize,
    /// Names dropped by a `DROPPED` / `DROPPED_IN_SHARED_LAYERS` rule of the weight table.
    pub dropped: Vec<String>,
}

/// Swap the last two axes of a row-major array (tiled, output row blocks in parallel: loading
/// transposes every projection, billions of values for real checkpoints).
fn transpose_last_two<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
) -> (Vec<f32>, [usize; D]) {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let (r, c) = (shape[D - 2], shape[D - 1]);
    let mut out = vec![0.0f32; values.len()];
    if r * c > 0 {
        for (src, dst) in values.chunks(r * c).zip(out.chunks_mut(r * c)) {
            // dst is [c, r]: block `jb` holds output rows jb·TILE .. (+TILE), i.e. source columns.
            dst.par_chunks_mut(TILE * r).enumerate().for_each(|(jb, block)| {
                let j0 = jb * TILE;
                let rows = block.len() / r;
                for i0 in (0..r).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(r) {
                        let row = &src[i * c + j0..i * c + j0 + rows];
                        for (dj, v) in row.iter().enumerate() {
                            block[dj * r + i] = *v;
                        }
                    }
                }
            });
        }
    }
    let mut t = shape;
    t.swap(D - 2, D - 1);
    (out, t)
}

/// A device tensor of `dtype` from f32 host values, converted on the host (in parallel) so
/// only `dtype`'s bytes cross to the device and no f32 copy is ever allocated there.
fn upload<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    use rayon::prelude::*;
    let data = match dtype {
        DType::F16 => TensorData::new(
            values.par_iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(),
            shape,
        ),
        DType::BF16 => TensorData::new(
            values.par_iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(),
            shape,
        ),
        _ => {
            return Tensor::<D>::from_data(TensorData::new(values, shape), (device, DType::F32))
                .cast(dtype);
        }
    };
    Tensor::<D>::from_data(data, (device, dtype))
}

/// Reads tensors by table name, converts them, and remembers what it used.
pub struct Weights<'a> {
    pub ckpt: &'a Checkpoint,
    pub prefix: &'static str,
    pub device: Device,
    /// Dtype of projection/embedding weights; norms and scalars are always f32.
    pub dtype: DType,
    /// Largest device piece of one weight, in bytes ([`Weights::get_pieces`]).
    pub piece_bytes: usize,
    used: BTreeSet<String>,
}

impl<'a> Weights<'a> {
    /// A loader of `ckpt`'s text weights onto `device`, as `options` say.
    pub fn new(ckpt: &'a Checkpoint, device: &Device, options: &LoadOptions) -> Result<Self> {
        let prefix = PREFIXES
            .iter()
            .copied()
            .find(|p| ckpt.tensors.contains_key(&format!("{p}embed_tokens.weight")))
            .ok_or_else(|| ModelError::MissingTensor {
                name: "model.language_model.embed_tokens.weight (or model.embed_tokens.weight)"
                    .into(),
                dir: ckpt.dir.clone(),
            })?;
        let (dtype, piece_bytes) = (options.dtype, options.piece_bytes);
        Ok(Self { ckpt, prefix, device: device.clone(), dtype, piece_bytes, used: BTreeSet::new() })
    }

    /// The checkpoint name of a table row.
    pub fn full_name(&self, name: &str, layer: Option<usize>) -> String {
        let local = match layer {
            Some(i) => name.replace("{i}", &i.to_string()),
            None => name.to_owned(),
        };
        if name == "lm_head.weight" { local } else { format!("{}{local}", self.prefix) }
    }

    /// Load a required tensor, check its HF shape, apply the row's transform.
    pub fn get<const D: usize>(
        &mut self,
        name: &str,
        layer: Option<usize>,
        shape: [usize; D],
    ) -> Result<Tensor<D>> {
        self.get_as(name, layer, shape, self.dtype)
    }

    /// As [`Weights::get`], always f32 (norm weights, scalars).
    pub fn get_f32<const D: usize>(
        &mut self,
        name: &str,
        layer: Option<usize>,
        shape: [usize; D],
    ) -> Result<Tensor<D>> {
        self.get_as(name, layer, shape, DType::F32)
    }

    /// Load a tensor only if the checkpoint has it.
    pub fn get_opt<const D: usize>(
        &mut self,
        name: &str,
        layer: Option<usize>,
        shape: [usize; D],
    ) -> Result<Option<Tensor<D>>> {
        let full = self.full_name(name, layer);
        if self.ckpt.tensors.contains_key(&full) {
            self.get(name, layer, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    fn get_as<const D: usize>(
        &mut self,
        name: &str,
        layer: Option<usize>,
        shape: [usize; D],
        dtype: DType,
    ) -> Result<Tensor<D>> {
        let row = table_row(name);
        let full = self.check(name, layer, &shape)?;
        let values = self.ckpt.to_f32(&full)?;
        // Transposes happen here on the host, so every weight is contiguous on the device: a
        // strided view would be copied by the backend on every matmul (measured ~20x slower).
        let (values, shape) = match row.transform {
            Transform::Keep | Transform::Host => (values, shape),
            Transform::Transpose | Transform::TransposeExperts => transpose_last_two(values, shape),
        };
        Ok(upload(values, shape, &self.device, dtype))
    }

    /// A tensor as device pieces cut along its first axis (vocabulary rows, experts), none
    /// above [`Weights::piece_bytes`] in the weight dtype; each piece gets the row's transform
    /// (or, with `transpose`, its last two axes swapped: the head `[e, v_p]` from `[v_p, e]`,
    /// the tied `embed_tokens` read again). One piece when the whole tensor fits.
    pub fn get_pieces<const D: usize>(
        &mut self,
        name: &str,
        layer: Option<usize>,
        shape: [usize; D],
        transpose: bool,
    ) -> Result<Vec<Tensor<D>>> {
        let full = self.check(name, layer, &shape)?;
        let values = self.ckpt.to_f32(&full)?;
        let transpose = transpose
            || matches!(
                table_row(name).transform,
                Transform::Transpose | Transform::TransposeExperts
            );
        let width: usize = shape[1..].iter().product();
        let rows = rows_per_piece(self.piece_bytes, width, self.dtype);
        let to_device = |chunk: Vec<f32>, piece: [usize; D]| {
            let (chunk, piece) =
                if transpose { transpose_last_two(chunk, piece) } else { (chunk, piece) };
            upload(chunk, piece, &self.device, self.dtype)
        };
        if rows >= shape[0] {
            return Ok(vec![to_device(values, shape)]); // one piece: no copy of the host values
        }
        let pieces = (0..shape[0])
            .step_by(rows)
            .map(|start| {
                let mut piece = shape;
                piece[0] = rows.min(shape[0] - start);
                to_device(values[start * width..(start + piece[0]) * width].to_vec(), piece)
            })
            .collect();
        Ok(pieces)
    }

    /// Mark a tensor used after checking its shape; returns its checkpoint name.
    pub fn check(&mut self, name: &str, layer: Option<usize>, shape: &[usize]) -> Result<String> {
        let full = self.full_name(name, layer);
        let info = self.ckpt.tensors.get(&full).ok_or_else(|| ModelError::MissingTensor {
            name: full.clone(),
            dir: self.ckpt.dir.clone(),
        })?;
        if info.shape != shape {
            return Err(ModelError::Shape {
                name: full,
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        self.used.insert(full.clone());
        Ok(full)
    }

    /// Every tensor must have been used or dropped by a rule.
    pub fn finish(self, cfg: &Gemma4TextConfig) -> Result<LoadReport> {
        let first_shared = cfg.first_kv_shared_layer();
        let shared_prefixes: Vec<String> = (first_shared..cfg.num_hidden_layers)
            .flat_map(|i| DROPPED_IN_SHARED_LAYERS.iter().map(move |m| format!("layers.{i}.{m}")))
            .map(|p| format!("{}{p}", self.prefix))
            .collect();
        let mut report = LoadReport { used: self.used.len(), dropped: Vec::new() };
        let mut unused = Vec::new();
        for name in self.ckpt.tensors.keys().filter(|n| !self.used.contains(*n)) {
            let dropped = DROPPED.iter().any(|p| name.starts_with(p))
                || shared_prefixes.iter().any(|p| name.starts_with(p.as_str()))
                || name.contains(".self_attn.rotary_emb.")
                || (cfg.tie_word_embeddings && name == "lm_head.weight"); // HF re-ties it to embed_tokens
            if dropped { report.dropped.push(name.clone()) } else { unused.push(name.clone()) }
        }
        if !unused.is_empty() {
            let count = unused.len();
            let mut names = unused.into_iter().take(8).collect::<Vec<_>>().join(", ");
            if count > 8 {
                names.push_str(", ...");
            }
            return Err(ModelError::UnusedTensors { dir: self.ckpt.dir.clone(), count, names });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transpose_equals_the_naive_one() {
        for (n, r, c) in [(1, 70, 45), (3, 33, 65), (2, 1, 97), (1, 64, 32)] {
            let values: Vec<f32> = (0..n * r * c).map(|i| i as f32).collect();
            let (got, shape) = transpose_last_two(values.clone(), [n, r, c]);
            assert_eq!(shape, [n, c, r]);
            for m in 0..n {
                for i in 0..r {
                    for j in 0..c {
                        assert_eq!(
                            got[m * r * c + j * r + i],
                            values[m * r * c + i * c + j],
                            "[{n}, {r}, {c}] at ({m}, {i}, {j})"
                        );
                    }
                }
            }
        }
    }
}
