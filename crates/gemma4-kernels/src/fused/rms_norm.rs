//! RMSNorm in one kernel each way, for the CubeCL runtimes (wgpu: Vulkan/Metal, CUDA).
//!
//! One cube per row. Each unit strides over the row's `d` values, the cube sums its partial
//! sums in shared memory, and the row is written in the same launch. All arithmetic is f32;
//! `x`, `y`, `dy` and `dx` keep the activation dtype (f32, f16 or bf16), the scale is f32.
//!
//! - Forward: `r = (Σx²/d + eps)^-½`, `y = x·r·w`.
//! - Backward (the input's gradient; the scale is a frozen weight): with `g = dy·w`,
//!   `dx = r·g − x·r³·(Σ g·x)/d`.
//!
//! Replaces, per norm, 8 plain launches forward (casts, square, mean, add, power, two products)
//! and about twice that backward.

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{BLOCK, cube_sum, elem, like, row_grid};

#[cube(launch)]
fn rms_norm_forward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<f32>,
    y: &mut Tensor<F>,
    rows: u32,
    d: u32,
    eps: f32,
    #[comptime] has_weight: bool,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * d as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut sum_sq = f32::new(0.0);
    let mut i = UNIT_POS_X;
    while i < d {
        let v = f32::cast_from(x[base + i as usize]);
        sum_sq += v * v;
        i += CUBE_DIM_X;
    }
    let total = cube_sum(&mut partial, sum_sq);
    let r = f32::new(1.0) / (total / f32::cast_from(d) + eps).sqrt();
    let mut i = UNIT_POS_X;
    while i < d {
        let mut v = f32::cast_from(x[base + i as usize]) * r;
        if comptime!(has_weight) {
            v *= weight[i as usize];
        }
        y[base + i as usize] = F::cast_from(v);
        i += CUBE_DIM_X;
    }
}

#[cube(launch)]
fn rms_norm_backward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<f32>,
    dy: &Tensor<F>,
    dx: &mut Tensor<F>,
    rows: u32,
    d: u32,
    eps: f32,
    #[comptime] has_weight: bool,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * d as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut sum_sq = f32::new(0.0);
    let mut sum_gx = f32::new(0.0);
    let mut i = UNIT_POS_X;
    while i < d {
        let v = f32::cast_from(x[base + i as usize]);
        let mut g = f32::cast_from(dy[base + i as usize]);
        if comptime!(has_weight) {
            g *= weight[i as usize];
        }
        sum_sq += v * v;
        sum_gx += g * v;
        i += CUBE_DIM_X;
    }
    let total_sq = cube_sum(&mut partial, sum_sq);
    let total_gx = cube_sum(&mut partial, sum_gx);
    let r = f32::new(1.0) / (total_sq / f32::cast_from(d) + eps).sqrt();
    let c = r * r * r * total_gx / f32::cast_from(d);
    let mut i = UNIT_POS_X;
    while i < d {
        let v = f32::cast_from(x[base + i as usize]);
        let mut g = f32::cast_from(dy[base + i as usize]);
        if comptime!(has_weight) {
            g *= weight[i as usize];
        }
        dx[base + i as usize] = F::cast_from(r * g - v * c);
        i += CUBE_DIM_X;
    }
}

/// The scale (f32, contiguous), or an unread one-element placeholder for the scale-free norms.
fn weight_arg(x: &CubeTensor, weight: Option<CubeTensor>) -> (CubeTensor, bool) {
    match weight {
        Some(w) => (into_contiguous(w), true),
        None => (
            empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([1]), DType::F32),
            false,
        ),
    }
}

/// `x·(mean(x²) + eps)^-½·w` over the last axis, in `x`'s dtype.
///
/// # Shapes
/// - x: `[.., d]`, weight: `[d]` (f32) → `[.., d]`
pub fn forward(x: CubeTensor, weight: Option<CubeTensor>, eps: f32) -> CubeTensor {
    let x = into_contiguous(x);
    let (count, rows, d) = row_grid(&x);
    let (weight, has_weight) = weight_arg(&x, weight);
    let y = like(&x);
    if rows == 0 || d == 0 {
        return y;
    }
    let dtype = elem(x.dtype);
    rms_norm_forward_kernel::launch(
        &x.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        rows,
        d,
        eps,
        has_weight,
        dtype,
    );
    y
}

/// The gradient with respect to `x` of [`forward`], given the output's gradient `dy`.
///
/// # Shapes
/// - x, dy: `[.., d]`, weight: `[d]` (f32) → `[.., d]`
pub fn backward(x: CubeTensor, weight: Option<CubeTensor>, dy: CubeTensor, eps: f32) -> CubeTensor {
    let x = into_contiguous(x);
    let dy = into_contiguous(dy);
    assert_eq!(x.dtype, dy.dtype, "fused RMSNorm backward: x and dy differ in dtype");
    let (count, rows, d) = row_grid(&x);
    let (weight, has_weight) = weight_arg(&x, weight);
    let dx = like(&x);
    if rows == 0 || d == 0 {
        return dx;
    }
    let dtype = elem(x.dtype);
    rms_norm_backward_kernel::launch(
        &x.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        dy.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        rows,
        d,
        eps,
        has_weight,
        dtype,
    );
    dx
}
