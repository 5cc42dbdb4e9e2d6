//! `Σ t²` of one tensor as `SQUARE_SUM_PARTS` partial sums (one per cube) in a shared
//! buffer, in one kernel: the global gradient norm of all LoRA tensors is then one launch per
//! tensor and a single read-back (the plain ops take a square, a sum, a fill and an add per
//! tensor).
//! One cube per tensor left the device running 410 single-cube kernels one after another
//! (15 ms of an E2B step through Vulkan, docs/performance.md).

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::ops::SQUARE_SUM_PARTS as PARTS;
use super::rows::{BLOCK, cube_sum};

#[cube(launch)]
fn square_sum_kernel(t: &Tensor<f32>, out: &mut Tensor<f32>, slot: u32) {
    let cols = t.shape(1);
    let n = t.shape(0) * cols;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut acc = f32::new(0.0);
    let mut i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    while i < n {
        // Read through the strides: gradients are often transposed views.
        let v = t[(i / cols) * t.stride(0) + (i % cols) * t.stride(1)];
        acc += v * v;
        i += (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    }
    let total = cube_sum(&mut partial, acc);
    if UNIT_POS_X == 0 {
        out[slot as usize + CUBE_POS_X as usize] = total;
    }
}

/// Writes `Σ t²` as `SQUARE_SUM_PARTS` partial sums into `out[slot .. slot + PARTS]` and returns `out`.
///
/// # Shapes
/// - t: `[r, c]` (f32, any strides), out: `[n]` (f32), slot + PARTS ≤ n
pub fn into_slot(t: CubeTensor, out: CubeTensor, slot: u32) -> CubeTensor {
    let t = if t.meta.is_tiled() { into_contiguous(t) } else { t };
    let client = t.client.clone();
    square_sum_kernel::launch(
        &client,
        CubeCount::Static(PARTS, 1, 1),
        CubeDim::new_1d(BLOCK),
        t.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        slot,
    );
    out
}
