//! `y = base + scale·xa·bᵀ` for a narrow `xa` (`[n, r]`, a LoRA rank) in one pass over
//! `base`: the adapter's change added into the frozen projection's output as it is written
//! (and, without a base, the backward's `dxa·A` written in the input's dtype).
//! The composed ops write the `[n, out]` product in f32, cast it and add it (three passes and
//! launches); here each unit keeps its column's `scale·b` row in registers, a cube stages
//! [`ROWS`] rows of `xa` in shared memory, each unit reads [`GROUP`] rows of `base` before it
//! writes them (35.8 → 33.1 ms of an E2B step through Vulkan), and the sum (`base` first) is
//! rounded once, to `base`'s dtype.

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
/// Rows a unit reads `base` for before it writes any of them (a divisor of [`ROWS`]).
const GROUP: usize = 8;

#[cube(launch)]
fn rank_update_kernel<F: Float>(
    base: &Tensor<F>,
    xa: &Tensor<f32>,
    b: &Tensor<f32>,
    y: &mut Tensor<F>,
    scale: f32,
    #[comptime] r: usize,
    #[comptime] has_base: bool,
    #[comptime] group: usize,
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
        let mut held = Array::<f32>::new(group);
        for g in 0..comptime!(ROWS as usize / group) {
            let first = g * group;
            if i0 + first + group <= rows {
                // A whole group in bounds: its base values are read before any `y` is
                // written, so the loads are in flight together.
                #[unroll]
                for u in 0..group {
                    held[u] = f32::new(0.0);
                    if comptime!(has_base) {
                        held[u] = f32::cast_from(base[(i0 + first + u) * cols + j]);
                    }
                }
                #[unroll]
                for u in 0..group {
                    let mut acc = held[u];
                    #[unroll]
                    for t in 0..r {
                        acc += staged[(first + u) * r + t] * bj[t];
                    }
                    y[(i0 + first + u) * cols + j] = F::cast_from(acc);
                }
            } else {
                for u in 0..group {
                    let row = i0 + first + u;
                    if row < rows {
                        let mut acc = f32::new(0.0);
                        #[unroll]
                        for t in 0..r {
                            acc += staged[(first + u) * r + t] * bj[t];
                        }
                        if comptime!(has_base) {
                            acc += f32::cast_from(base[row * cols + j]);
                        }
                        y[row * cols + j] = F::cast_from(acc);
                    }
                }
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
        if crate::switches::rank_group_off() { 1 } else { GROUP },
        dtype,
    );
    y
}
