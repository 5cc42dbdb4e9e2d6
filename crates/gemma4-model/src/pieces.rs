//! Device-sized pieces: the largest buffer a weight is loaded into, and cutting a tensor along
//! one axis into pieces below it ([`crate::weights::Weights::get_pieces`] loads them; `vocab`
//! and `moe` compute with them). The limit is a value of the load
//! ([`LoadOptions::piece_bytes`](crate::LoadOptions)), kept by the model it built
//! ([`Gemma4TextModel::piece_bytes`](crate::Gemma4TextModel::piece_bytes)).

use burn::tensor::{DType, Tensor};

use crate::error::{ModelError, Result};

/// Largest device buffer a weight is loaded into by default, in bytes; bigger tensors are cut
/// along their first axis (`Weights::get_pieces`). Through burn-wgpu on Vulkan
/// (H200, Burn 0.22.1) a matmul whose operand was 2.68 GB (E4B's f32 head) was silently not
/// computed while 1.61 GB ran; 1 GiB stays below that and below the 2 GiB (`i32` offsets, binding
/// ranges) some drivers have. It concerns the vocabulary matrices (31B f16 embedding 2.8 GB, E4B
/// f32 2.7 GB) and 26B-A4B's stacked experts in f32 (2.0 GB a layer); the PLE table stays on the
/// host. A device with smaller buffers (lavapipe: 128 MiB) loads with its own, lower limit.
pub const MAX_PIECE_BYTES: usize = 1 << 30;

/// The piece limit for a device whose largest buffer is `device_max` bytes (`None`: no limit
/// reported, as on the CPU), at least 1. [`MAX_PIECE_BYTES`] caps it where `capped`: burn-wgpu
/// devices (the failure above) and the CPU. A CUDA device is not capped: its largest buffer (a
/// quarter of its memory in CubeCL) is the limit, so E4B's 1.34 GB bf16 head stays one product
/// per loss chunk instead of two and a concatenation of the `[1024, 262144]` logits (measured on
/// the H200: 0.14 s of a 0.68 s step went to the loss, against 0.05 s for E2B's one piece).
pub fn piece_limit(device_max: Option<u64>, capped: bool) -> usize {
    let device = device_max.map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
    let cap = if capped || device_max.is_none() { MAX_PIECE_BYTES } else { usize::MAX };
    device.clamp(1, cap)
}

/// Whole rows (first-axis entries) of `width` values in `dtype` per piece of at most
/// `piece_bytes`, at least one.
pub fn rows_per_piece(piece_bytes: usize, width: usize, dtype: DType) -> usize {
    (piece_bytes / (width.max(1) * dtype.size())).max(1)
}

/// Concatenate `pieces` along `dim` and cut the result again every `rows` entries of that axis.
pub fn resplit<const D: usize>(
    pieces: Vec<Tensor<D>>,
    dim: usize,
    rows: usize,
) -> Result<Vec<Tensor<D>>> {
    if rows == 0 {
        return Err(ModelError::Input("pieces need at least one entry along the cut axis".into()));
    }
    let full = Tensor::cat(pieces, dim);
    let v = full.dims()[dim];
    Ok((0..v)
        .step_by(rows)
        .map(|start| full.clone().narrow(dim, start, rows.min(v - start)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_smaller_of_the_device_and_the_default() {
        assert_eq!(piece_limit(None, true), MAX_PIECE_BYTES);
        assert_eq!(piece_limit(None, false), MAX_PIECE_BYTES, "the CPU");
        assert_eq!(piece_limit(Some(128 << 20), true), 128 << 20, "lavapipe");
        assert_eq!(piece_limit(Some(u64::MAX), true), MAX_PIECE_BYTES, "never raised");
        assert_eq!(piece_limit(Some(0), true), 1);
        assert_eq!(piece_limit(Some(35 << 30), false), 35 << 30, "CUDA: its own largest page");
    }
}
