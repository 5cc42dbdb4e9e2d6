//! `y = base + scale·xa·bᵀ` for a narrow `xa` (`[n, r]`, a LoRA rank) in one pass over
//! `base`: the adapter's change added into the frozen projection's output as it is written
//! (and, without a base, the backward's `dxa·A` written in the input's dtype).
//! The composed ops write the `[n, out]` product in f32, cast it and add it (three passes and
//! launches); here each unit keeps its column's `scale·b` row in registers, a cube stages
//! [`ROWS`] rows of `xa` in shared memory, and the sum is rounded once, to `base`'s dtype.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::elem;
use super::tall::stage_rows;

/// Rows of `y` per cube: each unit reads its column's `b` row once for all of them (64 rows:
/// 48 ms of an E2B step through Vulkan where 16 took 76 ms, docs/performance.md).
const ROWS: u32 = 64;
/// Units per cube: columns of `y`.
const UNITS: u32 = 256;

#[cube(launch)]
fn rank_update_kernel<F: Float>(
    base: &Tensor<F>,
    xa: &Tensor<f32>,
    b: &Tensor<f32>,
    y: &mut Tensor<F>,
    scale: f32,
    #[comptime] r: usize,
    #[comptime] has_base: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (rows, cols) = (y.shape(0), y.shape(1));
    let i0 = CUBE_POS_Y as usize * ROWS as usize;
    let j = CUBE_POS_X as usize * UNITS as usize + UNIT_POS_X as usize;
    let mut staged = Shared::<[f32]>::new_slice(comptime!(ROWS as usize * r));
    stage_rows(xa, i0, rows, &mut staged, ROWS as usize, r);
    if j < cols {
        let mut bj = Array::<f32>::new(r);
        #[unroll]
        for t in 0..r {
            bj[t] = b[j * r + t] * scale;
        }
        for ii in 0..ROWS as usize {
            let row = i0 + ii;
            if row < rows {
                let mut acc = f32::new(0.0);
                #[unroll]
                for t in 0..r {
                    acc += staged[ii * r + t] * bj[t];
                }
                let at = row * cols + j;
                if comptime!(has_base) {
                    acc += f32::cast_from(base[at]);
                }
                y[at] = F::cast_from(acc);
            }
        }
    }
}

/// `base + scale·xa·bᵀ` in `base`'s dtype (module docs); without a base (`has_base` false),
/// `scale·xa·bᵀ` in `base`'s dtype, `base` bound but not read.
///
/// # Shapes
/// - base: `[n, out]`, xa: `[n, r]` (f32), b: `[out, r]` (f32) → `[n, out]`
pub fn forward(
    base: CubeTensor,
    has_base: bool,
    xa: CubeTensor,
    b: CubeTensor,
    scale: f32,
) -> CubeTensor {
    let (xa, b) = (into_contiguous(xa), into_contiguous(b));
    let base = if has_base { into_contiguous(base) } else { base };
    let [n, r] = xa.meta.shape().dims::<2>();
    let out = b.meta.shape().dims::<2>()[0];
    let client = xa.client.clone();
    let y = empty_device_contiguous_dtype(
        client.clone(),
        xa.device.clone(),
        [n, out].into(),
        base.dtype,
    );
    let dtype = elem(base.dtype);
    rank_update_kernel::launch(
        &client,
        CubeCount::Static((out as u32).div_ceil(UNITS), (n as u32).div_ceil(ROWS).max(1), 1),
        CubeDim::new_1d(UNITS),
        base.into_tensor_arg(),
        xa.into_tensor_arg(),
        b.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        scale,
        r,
        has_base,
        dtype,
    );
    y
}
