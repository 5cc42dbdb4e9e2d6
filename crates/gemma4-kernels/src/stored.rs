//! How a matrix operand lies in its buffer, for the products that read it in place (cuBLAS's
//! transpose flag, the tensor-core matmul's staging).

use burn::backend::ops::FloatTensorOps;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

/// `t` as a product reads it: itself when contiguous (`false`), the stored tensor of a view
/// with its last two axes swapped (`true`), else a contiguous copy (`false`).
pub fn physical(t: CubeTensor) -> (CubeTensor, bool) {
    if t.meta.is_tiled() {
        return (into_contiguous(t), false);
    }
    if t.is_contiguous() {
        return (t, false);
    }
    let r = t.meta.shape().num_dims();
    let swapped = CubeBackend::float_swap_dims(t, r - 2, r - 1);
    if swapped.is_contiguous() {
        return (swapped, true);
    }
    let t = CubeBackend::float_swap_dims(swapped, r - 2, r - 1);
    (into_contiguous(t), false)
}
