//! Device-sized pieces: the largest buffer a weight is loaded into, and cutting a tensor along
//! one axis into pieces below it ([`crate::weights::Weights::get_pieces`] loads them; `vocab`
//! and `moe` compute with them).

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{DType, Tensor};

use crate::error::{ModelError, Result};

/// Largest device buffer a weight is loaded into, in bytes; bigger tensors are cut along their
/// first axis ([`crate::weights::Weights::get_pieces`]). Through burn-wgpu on Vulkan (H200,
/// Burn 0.22.1) a matmul whose operand was 2.68 GB (E4B's f32 head) was silently not computed while 1.61 GB
/// ran; 1 GiB stays below that and below the 2 GiB (`i32` offsets, binding ranges) some drivers
/// have. It concerns the vocabulary matrices (31B f16 embedding 2.8 GB, E4B f32 2.7 GB) and
/// 26B-A4B's stacked experts in f32 (2.0 GB a layer); the PLE table stays on the host.
pub const MAX_PIECE_BYTES: usize = 1 << 30;

/// The piece limit in force: [`MAX_PIECE_BYTES`], or less once [`limit_piece_bytes`] was told
/// of a device with smaller buffers.
static PIECE_BYTES: AtomicUsize = AtomicUsize::new(MAX_PIECE_BYTES);

/// Lower the piece limit to `device_max` bytes, the largest buffer a device allocates (a GPU
/// backend reports it: lavapipe's is 128 MiB). Never raises it; applies to later loads.
pub fn limit_piece_bytes(device_max: u64) {
    let bytes = usize::try_from(device_max).unwrap_or(usize::MAX).max(1);
    PIECE_BYTES.fetch_min(bytes, Ordering::Relaxed);
}

/// The piece limit in force, in bytes.
pub fn piece_bytes() -> usize {
    PIECE_BYTES.load(Ordering::Relaxed)
}

/// Whole rows (first-axis entries) of `width` values in `dtype` per piece, at least one.
pub fn rows_per_piece(width: usize, dtype: DType) -> usize {
    (piece_bytes() / (width.max(1) * dtype.size())).max(1)
}

/// Concatenate `pieces` along `dim` and cut the result again every `rows` entries of that axis.
pub fn resplit<const D: usize>(pieces: Vec<Tensor<D>>, dim: usize, rows: usize) -> Result<Vec<Tensor<D>>> {
    if rows == 0 {
        return Err(ModelError::Input("pieces need at least one entry along the cut axis".into()));
    }
    let full = Tensor::cat(pieces, dim);
    let v = full.dims()[dim];
    Ok((0..v).step_by(rows).map(|start| full.clone().narrow(dim, start, rows.min(v - start))).collect())
}
