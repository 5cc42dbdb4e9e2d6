//! `Σ t²` of many tensors as `SQUARE_SUM_PARTS` partial sums each (one per cube), in one buffer:
//! the global gradient norm of all LoRA tensors is then a launch per [`GROUP`] tensors and a
//! single read-back (the plain ops take a square, a sum, a fill and an add per tensor). E2B's
//! 410 tensors took 410 launches of one cube each, which the device ran one after another
//! (15 ms of an E2B step through Vulkan); now 52 launches, 1.2 ms (docs/performance.md).

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::ops::{SQUARE_SUM_GROUP as GROUP, SQUARE_SUM_PARTS as PARTS};
use super::rows::{BLOCK, cube_sum};

/// This unit's share of `Σ t²` for part `CUBE_POS_X` of `t` (read through its strides:
/// gradients are often transposed views).
#[cube]
fn share(t: &Tensor<f32>) -> f32 {
    let cols = t.shape(1);
    let n = t.shape(0) * cols;
    let mut acc = f32::new(0.0);
    let mut i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    while i < n {
        let v = t[(i / cols) * t.stride(0) + (i % cols) * t.stride(1)];
        acc += v * v;
        i += (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    }
    acc
}

/// Cube (`x`, `y`) writes part `x` of tensor `y`'s sum into `out[(first + y)·PARTS + x]`; slots
/// from `count` on are not read.
#[cube(launch)]
#[allow(clippy::too_many_arguments, unused_assignments)]
fn square_sums_kernel(
    t0: &Tensor<f32>,
    t1: &Tensor<f32>,
    t2: &Tensor<f32>,
    t3: &Tensor<f32>,
    t4: &Tensor<f32>,
    t5: &Tensor<f32>,
    t6: &Tensor<f32>,
    t7: &Tensor<f32>,
    out: &mut Tensor<f32>,
    first: u32,
) {
    let slot = CUBE_POS_Y;
    let mut acc = f32::new(0.0);
    if slot == 0 {
        acc = share(t0);
    } else if slot == 1 {
        acc = share(t1);
    } else if slot == 2 {
        acc = share(t2);
    } else if slot == 3 {
        acc = share(t3);
    } else if slot == 4 {
        acc = share(t4);
    } else if slot == 5 {
        acc = share(t5);
    } else if slot == 6 {
        acc = share(t6);
    } else {
        acc = share(t7);
    }
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let total = cube_sum(&mut partial, acc);
    if UNIT_POS_X == 0 {
        out[((first + slot) * PARTS + CUBE_POS_X) as usize] = total;
    }
}

/// `Σ t²` of each tensor as `SQUARE_SUM_PARTS` partial sums into `out` from slot `first` on,
/// returned.
///
/// # Shapes
/// - each tensor: `[r, c]` (f32, any strides), out: `[n · SQUARE_SUM_PARTS]` (f32) → out
pub fn square_sums(tensors: Vec<CubeTensor>, out: CubeTensor, first: u32) -> CubeTensor {
    let client = out.client.clone();
    let tensors: Vec<CubeTensor> = tensors
        .into_iter()
        .map(|t| if t.meta.is_tiled() { into_contiguous(t) } else { t })
        .collect();
    for (g, group) in tensors.chunks(GROUP).enumerate() {
        // Unused slots repeat the first tensor; their cubes are not launched.
        let arg = |i: usize| group.get(i).unwrap_or(&group[0]).clone().into_tensor_arg();
        square_sums_kernel::launch(
            &client,
            CubeCount::Static(PARTS, group.len() as u32, 1),
            CubeDim::new_1d(BLOCK),
            arg(0),
            arg(1),
            arg(2),
            arg(3),
            arg(4),
            arg(5),
            arg(6),
            arg(7),
            out.clone().into_tensor_arg(),
            first + (g * GROUP) as u32,
        );
    }
    out
}
