//! Rotary position embedding, `x·cos + rotate_half(x)·sin`, in one kernel each way, for the
//! CubeCL runtimes (the plain ops take a neg, a cat, two casts, two products and an add, and
//! about as many again backward).
//!
//! With `h = d/2` and `i` the position along the head dimension:
//! - Forward: `y[i] = x[i]·cos[i] − x[i+h]·sin[i]` for `i < h`, `x[i]·cos[i] + x[i−h]·sin[i]`
//!   otherwise.
//! - Backward: `dx[i] = dy[i]·cos[i] + dy[i+h]·sin[i+h]` for `i < h`,
//!   `dy[i]·cos[i] − dy[i−h]·sin[i−h]` otherwise.
//!
//! One unit per element; f32 inside, the activation dtype in and out; cos and sin are f32.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{elem, like};

#[cube(launch)]
fn rope_kernel<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    y: &mut Tensor<F>,
    backward: u32,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= y.len() {
        terminate!();
    }
    let (d, h, s) = (x.shape(3), x.shape(2), x.shape(1));
    let half = d / 2;
    let di = i % d;
    let si = (i / (d * h)) % s;
    let bi = i / (d * h * s);
    let bt = bi % cos.shape(0); // 0 for broadcast tables
    // The tables' row of element i; its partner along the head dimension and the partner's
    // index in the row.
    let row = (bt * s + si) * d;
    let first = di < half;
    let j = if first { i + half } else { i - half };
    let dj = if first { di + half } else { di - half };
    let xi = f32::cast_from(x[i]);
    let xj = f32::cast_from(x[j]);
    let mut out = xi * cos[row + di];
    if backward == 0 {
        // y = x·cos + rotate_half(x)·sin, rotate_half([x1, x2]) = [−x2, x1].
        let r = xj * sin[row + di];
        out += if first { -r } else { r };
    } else {
        // x here is dy: dx[i] = dy[i]·cos[i] ± dy[j]·sin[j].
        let r = xj * sin[row + dj];
        out += if first { r } else { -r };
    }
    y[i] = F::cast_from(out);
}

/// The forward (`backward` false: `x·cos + rotate_half(x)·sin`) or the backward (`x` is the
/// output's gradient) in `x`'s dtype.
///
/// # Shapes
/// - x: `[b, s, h, d]` (d even), cos, sin: `[1 or b, s, 1, d]` (f32) → `[b, s, h, d]`
pub fn launch(x: CubeTensor, cos: CubeTensor, sin: CubeTensor, backward: bool) -> CubeTensor {
    let (x, cos, sin) = (into_contiguous(x), into_contiguous(cos), into_contiguous(sin));
    let y = like(&x);
    let n = y.meta.shape().num_elements();
    if n == 0 {
        return y;
    }
    let client = y.client.clone();
    let dim = CubeDim::new(&client, n);
    let dtype = elem(x.dtype);
    rope_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, dim),
        dim,
        x.into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        u32::from(backward),
        dtype,
    );
    y
}
