//! GeGLU's activation, `gelu_tanh(gate)·up`, in one kernel each way, for the CubeCL runtimes.
//!
//! One unit per element; f32 inside, the activation dtype (f32, f16 or bf16) in and out, so the
//! product is rounded once (the plain ops round after each of their ~10 launches).
//!
//! - Forward: `h = gelu(g)·u`, `gelu(g) = ½g(1 + tanh(c(g + 0.044715g³)))`, `c = √(2/π)`
//!   (HF `gelu_pytorch_tanh`, Burn's `gelu_approximate`).
//! - Backward: `dg = dh·u·gelu'(g)`, `du = dh·gelu(g)`, with
//!   `gelu'(g) = ½(1 + t) + ½g(1 − t²)·c(1 + 3·0.044715g²)`, `t = tanh(c(g + 0.044715g³))`.
//!
//! The row-scaled variant is f16's (gemma4-model's `mlp.rs`): `gelu(g)·u` can pass f16's range,
//! so one cube per row finds the row's largest `|gelu(g)·u|` in f32, picks the smallest power of
//! two `s ≥ 1` that brings it to at most [`F16_ROW_ROOM`], and writes `h = gelu(g)·u / s` (exact:
//! a power of two) and `s`. Its backward is the plain one with `dh / s`. Where the plain ops
//! cast gate and up to f32 (copies the tape keeps), form the product, reduce, scale and cast
//! (about a dozen launches), this is one launch that keeps gate and up as they are.

use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{BLOCK, cube_max, elem, like, row_grid};
pub use crate::reference::F16_ROW_ROOM;

/// `√(2/π)`.
const C: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation.
const A: f32 = 0.044_715;
/// Doublings of a row's scale at most: `2¹²⁶`, whose inverse is still a normal f32.
const MAX_DOUBLINGS: u32 = 126;

/// `tanh(c(g + a·g³))`.
#[cube]
fn tanh_of(g: f32) -> f32 {
    (f32::new(C) * (g + f32::new(A) * g * g * g)).tanh()
}

/// `gelu_tanh(g)·u`.
#[cube]
fn gelu_up(g: f32, u: f32) -> f32 {
    f32::new(0.5) * g * (f32::new(1.0) + tanh_of(g)) * u
}

/// Writes element `i` of both gradients from `g`, `u` and the output's gradient `d`.
#[cube]
fn write_grads<F: Float>(
    g: f32,
    u: f32,
    d: f32,
    dgate: &mut Tensor<F>,
    dup: &mut Tensor<F>,
    i: usize,
) {
    let t = tanh_of(g);
    let half = f32::new(0.5);
    let gelu = half * g * (f32::new(1.0) + t);
    let slope = half * (f32::new(1.0) + t)
        + half
            * g
            * (f32::new(1.0) - t * t)
            * f32::new(C)
            * (f32::new(1.0) + f32::new(3.0 * A) * g * g);
    dgate[i] = F::cast_from(d * u * slope);
    dup[i] = F::cast_from(d * gelu);
}

#[cube(launch)]
fn geglu_forward_kernel<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    h: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= h.len() {
        terminate!();
    }
    h[i] = F::cast_from(gelu_up(f32::cast_from(gate[i]), f32::cast_from(up[i])));
}

#[cube(launch)]
fn geglu_scaled_forward_kernel<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    h: &mut Tensor<F>,
    scale: &mut Tensor<f32>,
    rows: u32,
    d: u32,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * d as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut amax = f32::new(0.0);
    let mut i = UNIT_POS_X;
    while i < d {
        let j = base + i as usize;
        amax = max(amax, gelu_up(f32::cast_from(gate[j]), f32::cast_from(up[j])).abs());
        i += CUBE_DIM_X;
    }
    let amax = cube_max(&mut partial, amax);
    // The smallest power of two `s ≥ 1` with `amax / s ≤ room`, and `1 / s`, both exact.
    let (mut s, mut inv, mut doublings) = (f32::new(1.0), f32::new(1.0), 0u32);
    while amax > s * f32::new(F16_ROW_ROOM) && doublings < MAX_DOUBLINGS {
        s *= f32::new(2.0);
        inv *= f32::new(0.5);
        doublings += 1;
    }
    if UNIT_POS_X == 0 {
        scale[row as usize] = s;
    }
    let mut i = UNIT_POS_X;
    while i < d {
        let j = base + i as usize;
        h[j] = F::cast_from(gelu_up(f32::cast_from(gate[j]), f32::cast_from(up[j])) * inv);
        i += CUBE_DIM_X;
    }
}

#[cube(launch)]
fn geglu_backward_kernel<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    dh: &Tensor<F>,
    dgate: &mut Tensor<F>,
    dup: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= dgate.len() {
        terminate!();
    }
    let (g, u) = (f32::cast_from(gate[i]), f32::cast_from(up[i]));
    write_grads::<F>(g, u, f32::cast_from(dh[i]), dgate, dup, i);
}

#[cube(launch)]
fn geglu_scaled_backward_kernel<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    scale: &Tensor<f32>,
    dh: &Tensor<F>,
    dgate: &mut Tensor<F>,
    dup: &mut Tensor<F>,
    d: u32,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= dgate.len() {
        terminate!();
    }
    let (g, u) = (f32::cast_from(gate[i]), f32::cast_from(up[i]));
    let dd = f32::cast_from(dh[i]) / scale[i / d as usize];
    write_grads::<F>(g, u, dd, dgate, dup, i);
}

/// Contiguous `gate` and `up` of one shape and dtype.
fn inputs(gate: CubeTensor, up: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (gate, up) = (into_contiguous(gate), into_contiguous(up));
    assert_eq!(gate.meta.shape(), up.meta.shape(), "fused GeGLU: gate and up differ in shape");
    assert_eq!(gate.dtype, up.dtype, "fused GeGLU: gate and up differ in dtype");
    (gate, up)
}

/// `gelu_tanh(gate)·up`, elementwise, in the inputs' dtype.
///
/// # Shapes
/// - gate, up: `[..]` (equal) → `[..]`
pub fn forward(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
    let (gate, up) = inputs(gate, up);
    let h = like(&gate);
    let n = h.meta.shape().num_elements();
    if n == 0 {
        return h;
    }
    let client = h.client.clone();
    let dim = CubeDim::new(&client, n);
    let dtype = elem(gate.dtype);
    geglu_forward_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, dim),
        dim,
        gate.into_tensor_arg(),
        up.into_tensor_arg(),
        h.clone().into_tensor_arg(),
        dtype,
    );
    h
}

/// `gelu_tanh(gate)·up / s` in the inputs' dtype and the row scales `s` (f32; module docs).
///
/// # Shapes
/// - gate, up: `[.., d]` (equal) → (`[.., d]`, `[.., 1]`)
pub fn forward_scaled(gate: CubeTensor, up: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (gate, up) = inputs(gate, up);
    let (count, rows, d) = row_grid(&gate);
    let h = like(&gate);
    let mut dims = gate.meta.shape().clone();
    let last = dims.num_dims() - 1;
    dims[last] = 1;
    let scale =
        empty_device_contiguous_dtype(gate.client.clone(), gate.device.clone(), dims, DType::F32);
    if rows == 0 || d == 0 {
        return (h, scale);
    }
    let dtype = elem(gate.dtype);
    geglu_scaled_forward_kernel::launch(
        &gate.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        gate.into_tensor_arg(),
        up.into_tensor_arg(),
        h.clone().into_tensor_arg(),
        scale.clone().into_tensor_arg(),
        rows,
        d,
        dtype,
    );
    (h, scale)
}

/// The gradients of [`forward`] (`scale: None`) or [`forward_scaled`] (its row scales) with
/// respect to `gate` and `up`, given the output's `dh`.
///
/// # Shapes
/// - gate, up, dh: `[.., d]` (equal), scale: `[.., 1]` → (`[.., d]`, `[.., d]`)
pub fn backward(
    gate: CubeTensor,
    up: CubeTensor,
    dh: CubeTensor,
    scale: Option<CubeTensor>,
) -> (CubeTensor, CubeTensor) {
    let ((gate, up), dh) = (inputs(gate, up), into_contiguous(dh));
    assert_eq!(gate.dtype, dh.dtype, "fused GeGLU backward: gate and dh differ in dtype");
    let (dgate, dup) = (like(&gate), like(&gate));
    let n = dgate.meta.shape().num_elements();
    if n == 0 {
        return (dgate, dup);
    }
    let client = dgate.client.clone();
    let (dim, dtype) = (CubeDim::new(&client, n), elem(gate.dtype));
    let count = calculate_cube_count_elemwise(&client, n, dim);
    let [gate, up, dh] = [gate, up, dh].map(CubeTensor::into_tensor_arg);
    let outputs = (dgate.clone().into_tensor_arg(), dup.clone().into_tensor_arg());
    match scale {
        None => geglu_backward_kernel::launch(
            &client, count, dim, gate, up, dh, outputs.0, outputs.1, dtype,
        ),
        Some(scale) => {
            let shape = dgate.meta.shape();
            let d =
                u32::try_from(shape[shape.num_dims() - 1]).expect("fused GeGLU: width fits u32");
            geglu_scaled_backward_kernel::launch(
                &client,
                count,
                dim,
                gate,
                up,
                into_contiguous(scale).into_tensor_arg(),
                dh,
                outputs.0,
                outputs.1,
                d,
                dtype,
            )
        }
    }
    (dgate, dup)
}
