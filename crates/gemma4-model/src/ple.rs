//! Per-layer embeddings (PLE; E2B/E4B, `hidden_size_per_layer_input = D > 0`).
//!
//! Computed once before the layer stack (HF `get_per_layer_inputs` + `project_per_layer_inputs`):
//! - token part: `embed_tokens_per_layer[ids] · √D` → `[b, s, L, D]` (layer-major columns);
//! - context part: `RMS_w((h₀·per_layer_model_projectionᵀ) · H^-½)` over D, where `h₀` is the
//!   *scaled* token embedding;
//! - combined: `(context + token) · 2^-½`; layer `l` reads slice `[:, :, l, :]`.
//!
//! The table (`[V, L·D]`, 2.35 G values on E2B) never goes to the device: it stays in the
//! mapped checkpoint and only the current tokens' rows are decoded.

use burn::tensor::{DType, Device, Tensor, TensorData};
use half::{bf16, f16, slice::HalfFloatSliceExt};

use crate::checkpoint::Checkpoint;
use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};
use crate::norm::RmsNorm;
use crate::weights::Weights;

#[derive(Clone, Debug)]
pub struct Ple {
    /// The mapped checkpoint holding `embed_tokens_per_layer.weight`, and that tensor's name.
    table: Checkpoint,
    table_name: String,
    /// `[e, L·D]`
    pub per_layer_model_projection: Tensor<2>,
    pub per_layer_projection_norm: RmsNorm,
    pub num_layers: usize,
    pub dim: usize,
}

impl Ple {
    pub fn load(w: &mut Weights, cfg: &Gemma4TextConfig) -> Result<Self> {
        let (l, d, e) = (cfg.num_hidden_layers, cfg.hidden_size_per_layer_input, cfg.hidden_size);
        let table_name = w.check(
            "embed_tokens_per_layer.weight",
            None,
            &[cfg.vocab_size_per_layer_input, l * d],
        )?;
        Ok(Self {
            table: w.ckpt.clone(),
            table_name,
            per_layer_model_projection: w.get(
                "per_layer_model_projection.weight",
                None,
                [l * d, e],
            )?,
            per_layer_projection_norm: RmsNorm::new(
                w.get_f32("per_layer_projection_norm.weight", None, [d])?,
                cfg.rms_norm_eps,
            ),
            num_layers: l,
            dim: d,
        })
    }

    /// The token part from `ahead` when it holds these ids' rows, else uploaded now.
    ///
    /// # Shapes
    /// - ids: `b·s` token ids, h0: `[b, s, e]` (scaled embeddings) → `[b, s, L, D]`
    pub fn inputs(
        &self,
        ids: &[usize],
        h0: &Tensor<3>,
        ahead: Option<&PleRows>,
    ) -> Result<Tensor<4>> {
        let [b, s, e] = h0.dims();
        let (l, d) = (self.num_layers, self.dim);
        let dtype = self.per_layer_model_projection.dtype();
        // Scaled and rounded to the compute dtype on the host, as the device would (f32
        // product, one rounding), rows in parallel straight into the upload's bytes (a zeroed
        // allocation the rows fault in, not a serial fill): under f16/bf16 half of f32's bytes.
        let root = (d as f32).sqrt();
        let token = match ahead.filter(|a| a.ids == ids) {
            Some(a) => a.rows.clone(),
            None => self.upload_rows(ids, root, dtype, &h0.device())?,
        };
        let token = token.reshape([b, s, l, d]);
        let context = gemma4_kernels::linear(
            h0.clone().cast(dtype),
            self.per_layer_model_projection.clone(),
            None,
        )
        .mul_scalar((e as f64).powf(-0.5))
        .reshape([b, s, l, d]);
        let context = self.per_layer_projection_norm.forward(context);
        Ok((context + token).mul_scalar(0.5f64.sqrt()))
    }
}

/// The token part of a batch's PLE inputs (`[ids, L·D]`, scaled and rounded as
/// [`Ple::inputs`] makes it), uploaded ahead of the batch's forward pass
/// ([`Gemma4TextModel::upload_ple_rows`](crate::Gemma4TextModel::upload_ple_rows)).
#[derive(Clone, Debug)]
pub struct PleRows {
    ids: Vec<usize>,
    rows: Tensor<2>,
}

/// Bytes of one upload of PLE rows, and how many bytes may be written before the device is
/// waited for (see [`Ple::upload_rows`]).
const UPLOAD_PIECE: usize = 8 << 20;
const UPLOAD_FLUSH: usize = 48 << 20;

impl Ple {
    /// The rows of `ids`, times `root`, on `device` in `dtype`: `[ids, L·D]`.
    ///
    /// Uploaded in pieces of about [`UPLOAD_PIECE`] bytes, waiting for the device after every
    /// [`UPLOAD_FLUSH`] bytes. wgpu stages each write in host memory it allocates; a write
    /// larger than its allocator's blocks (64–128 MiB) gets memory of its own each step, and
    /// writes that pile up before the device consumes them take new blocks. On E2B 4 × 2048
    /// (146 MB of rows) through Vulkan one upload took 165 ms after a 25 ms gather; gathered
    /// and uploaded in these pieces, 87–94 ms (docs/performance.md).
    fn upload_rows(
        &self,
        ids: &[usize],
        root: f32,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor<2>> {
        self.upload_rows_in(ids, root, (dtype, device), [UPLOAD_PIECE, UPLOAD_FLUSH])
    }

    /// The rows of `ids` as [`Ple::inputs`] would upload them, without waiting for the device:
    /// uploaded while the device still runs the previous step's backward pass, which a wait
    /// would sit out (the host's gather and wgpu's staging then overlap it).
    pub fn upload_ahead(&self, ids: Vec<usize>, device: &Device) -> Result<PleRows> {
        let (root, dtype) = ((self.dim as f32).sqrt(), self.per_layer_model_projection.dtype());
        let rows = self.upload_rows_in(&ids, root, (dtype, device), [UPLOAD_PIECE, usize::MAX])?;
        Ok(PleRows { ids, rows })
    }

    /// [`Ple::upload_rows`] in pieces of `piece` bytes, waiting after every `flush` bytes.
    fn upload_rows_in(
        &self,
        ids: &[usize],
        root: f32,
        (dtype, device): (DType, &Device),
        [piece, flush]: [usize; 2],
    ) -> Result<Tensor<2>> {
        let width = self.num_layers * self.dim;
        let row_bytes = (width * dtype.size()).max(1);
        let (mut pieces, mut pending) = (Vec::new(), 0usize);
        for chunk in ids.chunks((piece / row_bytes).max(1)) {
            let mut bytes = vec![0u8; chunk.len() * row_bytes];
            self.table.gather_rows_with(&self.table_name, chunk, &mut bytes, |row, out| {
                row.iter_mut().for_each(|x| *x *= root);
                put_row(row, dtype, out);
            })?;
            pending += bytes.len();
            let data = TensorData::from_bytes_vec(bytes, [chunk.len(), width], dtype);
            pieces.push(Tensor::<2>::from_data(data, (device, dtype)));
            if pending >= flush {
                device.sync().map_err(|e| ModelError::Input(format!("device: {e:?}")))?;
                pending = 0;
            }
        }
        Ok(if pieces.len() == 1 { pieces.remove(0) } else { Tensor::cat(pieces, 0) })
    }
}

/// `row` into `out` as little-endian bytes of `dtype` (f16 and bf16 rounded to nearest, through
/// `half`'s vectorised slice conversion; else f32).
fn put_row(row: &[f32], dtype: DType, out: &mut [u8]) {
    fn write<const N: usize, T: Copy>(values: &[T], out: &mut [u8], bytes: fn(T) -> [u8; N]) {
        out.chunks_exact_mut(N).zip(values).for_each(|(o, &v)| o.copy_from_slice(&bytes(v)));
    }
    match dtype {
        DType::F16 => {
            let mut h = vec![f16::ZERO; row.len()];
            h.convert_from_f32_slice(row);
            write(&h, out, f16::to_le_bytes);
        }
        DType::BF16 => {
            let mut h = vec![bf16::ZERO; row.len()];
            h.convert_from_f32_slice(row);
            write(&h, out, bf16::to_le_bytes);
        }
        _ => write(row, out, f32::to_le_bytes),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::{DType, Device};

    use crate::{Checkpoint, Gemma4TextConfig, Gemma4TextModel, RandomInit};

    #[test]
    fn rows_uploaded_in_pieces_equal_one_upload() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/e2b_like");
        let config = Gemma4TextConfig::from_file(&path.join("config.json")).unwrap().config;
        let ckpt = Checkpoint::random(&config, RandomInit { seed: 5, std: 0.02 });
        let device = Device::flex();
        let (model, _) = Gemma4TextModel::load(config, &ckpt, &device, DType::F32).unwrap();
        let ple = model.ple.as_ref().expect("e2b_like has per-layer inputs");
        let ids: Vec<usize> = (0..23).map(|i| (i * 37 + 5) % 256).collect();
        let rows = |piece, flush| {
            let t = ple.upload_rows_in(&ids, 4.0, (DType::F32, &device), [piece, flush]).unwrap();
            assert_eq!(t.dims(), [ids.len(), ple.num_layers * ple.dim]);
            t.into_data().try_to_vec::<f32>().unwrap()
        };
        let whole = rows(usize::MAX, usize::MAX);
        let row = ple.num_layers * ple.dim * 4;
        // Pieces of 1 and of 5 rows (the last one short), waits after every two rows and none.
        assert_eq!(rows(row, 2 * row), whole);
        assert_eq!(rows(5 * row, usize::MAX), whole);
        assert_eq!(rows(1, 0), whole, "a piece smaller than a row still takes one row");
        let table = ckpt.to_f32("model.embed_tokens_per_layer.weight").unwrap();
        let width = ple.num_layers * ple.dim;
        let want: Vec<f32> =
            table[ids[3] * width..(ids[3] + 1) * width].iter().map(|x| x * 4.0).collect();
        assert_eq!(
            &whole[3 * width..4 * width],
            want.as_slice(),
            "row 3 is token {}'s, scaled",
            ids[3]
        );
    }
}
