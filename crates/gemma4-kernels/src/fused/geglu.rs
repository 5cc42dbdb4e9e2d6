//! GeGLU's activation, `gelu_tanh(gate)·up`, in one kernel each way, for the CubeCL runtimes.
//!
//! One unit per element; f32 inside, the activation dtype (f32, f16 or bf16) in and out, so the
//! product is rounded once (the plain ops round after each of their ~10 launches).
//!
//! - Forward: `h = gelu(g)·u`, `gelu(g) = ½g(1 + tanh(c(g + 0.044715g³)))`, `c = √(2/π)`
//!   (HF `gelu_pytorch_tanh`, Burn's `gelu_approximate`).
//! - Backward: `dg = dh·u·gelu'(g)`, `du = dh·gelu(g)`, with
//!   `gelu'(g) = ½(1 + t) + ½g(1 − t²)·c(1 + 3·0.044715g²)`, `t = tanh(c(g + 0.044715g³))`.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{elem, like};

/// `√(2/π)`.
const C: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation.
const A: f32 = 0.044_715;

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
    let g = f32::cast_from(gate[i]);
    let t = (f32::new(C) * (g + f32::new(A) * g * g * g)).tanh();
    h[i] = F::cast_from(f32::new(0.5) * g * (f32::new(1.0) + t) * f32::cast_from(up[i]));
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
    let g = f32::cast_from(gate[i]);
    let u = f32::cast_from(up[i]);
    let d = f32::cast_from(dh[i]);
    let t = (f32::new(C) * (g + f32::new(A) * g * g * g)).tanh();
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

/// `gelu_tanh(gate)·up`, elementwise, in the inputs' dtype.
///
/// # Shapes
/// - gate, up: `[..]` (equal) → `[..]`
pub fn forward(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
    let (gate, up) = (into_contiguous(gate), into_contiguous(up));
    assert_eq!(gate.meta.shape(), up.meta.shape(), "fused GeGLU: gate and up differ in shape");
    assert_eq!(gate.dtype, up.dtype, "fused GeGLU: gate and up differ in dtype");
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

/// The gradients of [`forward`] with respect to `gate` and `up`, given the output's `dh`.
///
/// # Shapes
/// - gate, up, dh: `[..]` (equal) → (`[..]`, `[..]`)
pub fn backward(gate: CubeTensor, up: CubeTensor, dh: CubeTensor) -> (CubeTensor, CubeTensor) {
    let (gate, up, dh) = (into_contiguous(gate), into_contiguous(up), into_contiguous(dh));
    assert_eq!(gate.dtype, dh.dtype, "fused GeGLU backward: gate and dh differ in dtype");
    let (dgate, dup) = (like(&gate), like(&gate));
    let n = dgate.meta.shape().num_elements();
    if n == 0 {
        return (dgate, dup);
    }
    let client = dgate.client.clone();
    let dim = CubeDim::new(&client, n);
    let dtype = elem(gate.dtype);
    geglu_backward_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, dim),
        dim,
        gate.into_tensor_arg(),
        up.into_tensor_arg(),
        dh.into_tensor_arg(),
        dgate.clone().into_tensor_arg(),
        dup.clone().into_tensor_arg(),
        dtype,
    );
    (dgate, dup)
}
