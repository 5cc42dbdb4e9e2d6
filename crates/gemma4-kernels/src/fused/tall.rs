//! `c = scale·pᵀ·q` where `p` `[k, P]` and `q` `[k, Q]` are tall (`k` the rows of a batch, in
//! the thousands) and one side is narrow (a LoRA rank, ≤ 64): the gradients of the
//! adapter's factors, `dB = s·dyᵀ·xa` and `dA = dxaᵀ·x`. Burn's matmul takes these through a
//! kernel that wants both operands `k`-contiguous, so each call first copies `x` or `dy`
//! transposed (docs/performance.md: 740 such copies, 87 ms of an E2B step through Vulkan).
//! Here each operand is read as it lies, row after row: one unit per column of the wide
//! operand keeps the narrow side's sums in registers over a chunk of [`CHUNK`] rows (the
//! narrow operand's rows staged in shared memory), and the chunks' partial sums are added
//! after (split-k).

use burn::backend::ops::FloatTensorOps;
use burn::tensor::DType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::elem;

/// Rows of `p` and `q` per cube.
pub const CHUNK: u32 = 128;
/// Units per cube: columns of the wide operand.
const UNITS: u32 = 256;

/// One chunk's partial `[wide, narrow]` products into `partial` (`[chunks, P, Q]`).
/// Rows `first ..` of a row-major `[rows, r]` f32 matrix (`count` of them, zeros past its end)
/// into `staged`, by all of the cube's units; returns after the cube's barrier.
#[cube]
pub fn stage_rows(
    src: &Tensor<f32>,
    first: usize,
    rows: usize,
    staged: &mut Shared<[f32]>,
    #[comptime] count: usize,
    #[comptime] r: usize,
) {
    let mut i = UNIT_POS as usize;
    while i < comptime!(count * r) {
        let row = first + i / r;
        let mut value = f32::new(0.0);
        if row < rows {
            value = src[row * r + i % r];
        }
        staged[i] = value;
        i += CUBE_DIM as usize;
    }
    sync_cube();
}

#[cube(launch)]
fn tall_kernel<F: Float>(
    wide: &Tensor<F>,
    narrow: &Tensor<f32>,
    partial: &mut Tensor<f32>,
    scale: f32,
    #[comptime] r: usize,
    #[comptime] wide_rows: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (rows, cols) = (wide.shape(0), wide.shape(1));
    let chunk = CUBE_POS_Y as usize;
    let k0 = chunk * CHUNK as usize;
    let w = CUBE_POS_X as usize * UNITS as usize + UNIT_POS_X as usize;
    let mut staged = Shared::<[f32]>::new_slice(comptime!(CHUNK as usize * r));
    stage_rows(narrow, k0, rows, &mut staged, CHUNK as usize, r);
    if w < cols {
        let mut acc = Array::<f32>::new(r);
        #[unroll]
        for t in 0..r {
            acc[t] = f32::new(0.0);
        }
        let mut end = rows - k0;
        if end > CHUNK as usize {
            end = CHUNK as usize;
        }
        for kk in 0..end {
            let v = f32::cast_from(wide[(k0 + kk) * cols + w]);
            #[unroll]
            for t in 0..r {
                acc[t] += v * staged[kk * r + t];
            }
        }
        // `c` is `[P, Q]` with the wide side first (`wide_rows`) or second.
        #[unroll]
        for t in 0..r {
            if comptime!(wide_rows) {
                partial[(chunk * cols + w) * r + t] = acc[t] * scale;
            } else {
                partial[(chunk * r + t) * cols + w] = acc[t] * scale;
            }
        }
    }
}

/// `scale·wideᵀ·narrow` (`wide_rows`: `[P, r]`) or `scale·narrowᵀ·wide` (`[r, P]`), in f32
/// (module docs): `wide` in any float dtype, `narrow` f32 with at most 64 columns.
///
/// # Shapes
/// - wide: `[k, P]`, narrow: `[k, r]` → `[P, r]` or `[r, P]`
pub fn product(wide: CubeTensor, narrow: CubeTensor, wide_rows: bool, scale: f32) -> CubeTensor {
    let (wide, narrow) = (into_contiguous(wide), into_contiguous(narrow));
    let [k, cols] = wide.meta.shape().dims::<2>();
    let r = narrow.meta.shape().dims::<2>()[1];
    let chunks = k.div_ceil(CHUNK as usize).max(1);
    let shape = if wide_rows { [chunks, cols, r] } else { [chunks, r, cols] };
    let client = wide.client.clone();
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = empty_device_contiguous_dtype(
        client.clone(),
        wide.device.clone(),
        shape.into(),
        DType::F32,
    );
    let dtype = elem(wide.dtype);
    tall_kernel::launch(
        &client,
        CubeCount::Static((cols as u32).div_ceil(UNITS), chunks as u32, 1),
        CubeDim::new_1d(UNITS),
        wide.into_tensor_arg(),
        narrow.into_tensor_arg(),
        partial.clone().into_tensor_arg(),
        scale,
        r,
        wide_rows,
        dtype,
    );
    let [_, a, b] = shape;
    let sum = if chunks == 1 { partial } else { CubeBackend::float_sum_dim(partial, 0) };
    CubeBackend::float_reshape(sum, [a, b].into())
}

/// Launches of the kernel so far in this process (tests check which path ran).
pub static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
