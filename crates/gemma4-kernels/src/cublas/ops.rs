//! The extension trait. Burn's `backend_extension` generates its `Dispatch` routing: CubeCL
//! devices reach `cube.rs`, autodiff-wrapped ones `autodiff.rs`.

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};
use burn::tensor::DType;

/// A matrix product that cuBLAS runs on CUDA.
#[backend_extension(Cube, Autodiff)]
pub trait CublasMatmul: Backend {
    /// `a·b` over the last two axes, with equal leading (batch) axes: the inputs rounded to
    /// `compute` (a cast inside the op, not kept), f32 accumulation, the result in `out`. A
    /// transposed view of a contiguous tensor is read as it lies (cuBLAS's transpose flag), not
    /// copied. The backward gives each operand's gradient in its own dtype, through the same op.
    ///
    /// # Shapes
    /// - a: `[.., m, k]`, b: `[.., k, n]` → `[.., m, n]`
    fn cublas_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        compute: DType,
        out: DType,
    ) -> FloatTensor<Self>;
}
