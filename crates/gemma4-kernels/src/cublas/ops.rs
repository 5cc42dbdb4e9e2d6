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
    /// `alpha` multiplies the product in f32 before it is written (1.0: the plain product).
    ///
    /// # Shapes
    /// - a: `[.., m, k]`, b: `[.., k, n]` → `[.., m, n]`
    fn cublas_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        compute: DType,
        out: DType,
        alpha: f32,
    ) -> FloatTensor<Self>;

    /// `alpha·(a·b) + c` in `c`'s dtype, as [`cublas_matmul`](Self::cublas_matmul) computes the
    /// product: cuBLAS adds it into `c`'s buffer (`beta = 1`) when `c` is contiguous and not
    /// shared, so the sum costs no launch of its own. `c`'s gradient is the output's.
    ///
    /// # Shapes
    /// - a: `[.., m, k]`, b: `[.., k, n]`, c: `[.., m, n]` → `[.., m, n]`
    fn cublas_matmul_add(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        compute: DType,
        alpha: f32,
    ) -> FloatTensor<Self>;

    /// A frozen projection with a low-rank change, `x·w + alpha·(x·aᵀ)·bᵀ`, its three products
    /// under one ordering handoff, `alpha` applied in f32 and the change added as cuBLAS writes
    /// it. The factors (f32) are rounded to `x`'s dtype for the products; the result is in `x`'s
    /// dtype. The backward (through [`cublas_low_rank_backward`](Self::cublas_low_rank_backward))
    /// gives `x`'s, `a`'s and `b`'s gradients; `w` is frozen.
    ///
    /// # Shapes
    /// - x: `[m, k]`, w: `[k, n]`, a: `[r, k]`, b: `[n, r]` → `[m, n]`
    fn cublas_low_rank(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        alpha: f32,
    ) -> FloatTensor<Self>;

    /// The gradients of [`cublas_low_rank`](Self::cublas_low_rank) from the output's `dy`:
    /// `(dx, da, db)`, six products under one handoff (`x·aᵀ` again rather than kept). `dx` in
    /// `x`'s dtype, `da` and `db` in the factors' dtypes.
    ///
    /// # Shapes
    /// - x: `[m, k]`, w: `[k, n]`, a: `[r, k]`, b: `[n, r]`, dy: `[m, n]` →
    ///   (`[m, k]`, `[r, k]`, `[n, r]`)
    fn cublas_low_rank_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        alpha: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}
