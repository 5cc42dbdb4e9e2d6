//! Matrix products through cuBLAS on CUDA devices, as a Burn backend extension.
//!
//! - `ops.rs`: the extension trait [`CublasMatmul`] and its routing (Burn's `backend_extension`).
//! - `cube.rs`: the CubeCL implementation: CUDA buffers' device pointers into cuBLAS.
//! - `autodiff.rs`: the backward, `da = dc·bᵀ` and `db = aᵀ·dc` through the same op.
//! - `gemm.rs`: the cuBLAS call (cudarc) and its per-thread handle and stream.
//! - `handoff.rs`: ordering each call between CubeCL's kernels on the device.
//! - `low_rank.rs`: a frozen projection with a low-rank change, its products under one handoff.
//!
//! Ordering with CubeCL's kernels: CubeCL runs its kernels on a stream of its own that it does
//! not expose. Two device counters order each call after the CubeCL kernels queued before it
//! and before those queued after it, with no host wait (`handoff.rs`).
//! `GEMMA4_TUNE_CUBLAS_SYNC=host` drains both streams from the host instead: two host round
//! trips per product.

mod autodiff;
mod cube;
mod gemm;
mod handoff;
mod low_rank;
mod ops;

use burn::tensor::{DType, Device, Tensor};

use ops::CublasMatmul;

/// Whether `device` is a CUDA device (directly or under autodiff).
pub fn is_cuda(device: &Device) -> bool {
    matches!(crate::device::cube(device), Some(cubecl::Device::Cuda(_)))
}

/// Whether cuBLAS takes `a·b`: both on a CUDA device in float dtypes it runs (f32, f16, bf16),
/// libcublas present. Shapes the op does not take fall back inside it.
pub fn eligible<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> bool {
    let runs = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    runs(a.dtype()) && runs(b.dtype()) && gemm::available() && is_cuda(&a.device())
}

/// `alpha·a·b` through the extension (see [`eligible`]): inputs rounded to `compute`, result in
/// `out`.
pub fn matmul<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    compute: DType,
    out: DType,
    alpha: f32,
) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CublasMatmul>::cublas_matmul(
        a.into_dispatch(),
        b.into_dispatch(),
        compute,
        out,
        alpha,
    ))
}

/// `alpha·a·b + c` through the extension, in `c`'s dtype (see [`eligible`]).
pub fn matmul_add<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    c: Tensor<D>,
    compute: DType,
    alpha: f32,
) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CublasMatmul>::cublas_matmul_add(
        a.into_dispatch(),
        b.into_dispatch(),
        c.into_dispatch(),
        compute,
        alpha,
    ))
}

/// `x·w + alpha·(x·aᵀ)·bᵀ` through the extension, in `x`'s dtype (see
/// [`CublasMatmul::cublas_low_rank`]).
pub fn low_rank(x: Tensor<2>, w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, alpha: f32) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CublasMatmul>::cublas_low_rank(
        x.into_dispatch(),
        w.into_dispatch(),
        a.into_dispatch(),
        b.into_dispatch(),
        alpha,
    ))
}
