//! The extension trait. Burn's `backend_extension` generates its `Dispatch` routing: CubeCL
//! devices reach `cube.rs`, autodiff-wrapped ones `autodiff.rs`.

use burn::backend::{Backend, backend_extension, tensor::FloatTensor};

/// A matrix product that cuBLAS runs on CUDA.
#[backend_extension(Cube, Autodiff)]
pub trait CublasMatmul: Backend {
    /// `a·b` over the last two axes, with equal leading (batch) axes. A transposed view of a
    /// contiguous tensor is read as it lies (cuBLAS's transpose flag), not copied.
    ///
    /// # Shapes
    /// - a: `[.., m, k]`, b: `[.., k, n]` → `[.., m, n]`
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
}
