//! The products among the fused ops: the tensor-core matmul (`matmul_tc.rs`, opt-in) and a
//! projection's output with LoRA's change added (`rank_update.rs`, `tall.rs`), each with the
//! switch that sends the model there and a count of its launches.

use burn::tensor::{DType, Device, Tensor};

use super::enabled;
#[cfg(feature = "cube")]
use super::{matmul_tc, ops, tall};

/// Whether [`matmul`] takes the products on `device`: only when asked
/// (`GEMMA4_TUNE_TILE_MATMUL=1`) and the fused kernels are [`enabled`] there. The op itself
/// falls back to Burn's matmul where the device has no 16 × 16 × 16 `cmma` (lavapipe) or the
/// product is thin (`matmul_tc.rs`). Off by default: through Vulkan on an H200 it took the E2B
/// 4 × 2048 f16 step from 1.52 to 1.67 s (it passes Burn's matmul on the forward's products and
/// trails it on the backward's; docs/performance.md), and CUDA has cuBLAS.
pub fn tile_matmul_enabled(device: &Device) -> bool {
    crate::switches::tile_matmul_on() && enabled(device)
}

/// How many products [`matmul`] has run on tensor cores in this process.
pub fn tile_matmul_launches() -> u64 {
    #[cfg(feature = "cube")]
    return matmul_tc::LAUNCHES.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "cube"))]
    0
}

/// `a·b` of two f16/bf16 matrices through the project's tensor-core kernel with its backward
/// on a device where the fused kernels are [`enabled`] (the op falls back to Burn's matmul
/// where the kernel does not take it), else Burn's matmul. `crate::matmul` sends products
/// here where [`tile_matmul_enabled`].
///
/// # Shapes
/// - a: `[m, k]`, b: `[k, n]` → `[m, n]`
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "cube")]
    if enabled(&a.device())
        && matches!(a.dtype(), DType::F16 | DType::BF16)
        && b.dtype() == a.dtype()
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        return Tensor::from_dispatch(<Dispatch as Fused>::fused_matmul(
            a.into_dispatch(),
            b.into_dispatch(),
        ));
    }
    a.matmul(b)
}

/// `base + scale·(x·aᵀ)·bᵀ` in `base`'s dtype, a frozen projection's output with LoRA's
/// change added: on a device where the fused kernels are [`enabled`] (`a`, `b` f32, rank ≤
/// 32) one op that reads `x` in its own dtype (no f32 copy kept), adds the change as it writes
/// the output (`rank_update.rs`) and sums the factors' gradients over the rows as `x` and `dy`
/// lie (`tall.rs`); elsewhere the plain ops in f32.
///
/// # Shapes
/// - x: `[n, in]`, a: `[r, in]`, b: `[out, r]`, base: `[n, out]` → `[n, out]`
pub fn low_rank_add(
    x: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    base: Tensor<2>,
    scale: f64,
) -> Tensor<2> {
    #[cfg(feature = "cube")]
    if enabled(&x.device())
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.dims()[0] <= MAX_RANK
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        let [x, a, b, base] = [x, a, b, base].map(Tensor::into_dispatch);
        let y = <Dispatch as Fused>::fused_low_rank_add(x, a, b, base, scale as f32);
        return Tensor::from_dispatch(y);
    }
    let (dtype, x) = (base.dtype(), x.cast(DType::F32));
    base + x.matmul(a.transpose()).matmul(b.mul_scalar(scale).transpose()).cast(dtype)
}

/// The widest rank [`low_rank_add`] takes (its `x·aᵀ` keeps a rank's partial sums per unit).
pub const MAX_RANK: usize = 32;

/// How many tall products (`tall.rs`: the factors' gradients of [`low_rank_add`]) ran so far.
pub fn tall_launches() -> u64 {
    #[cfg(feature = "cube")]
    return tall::LAUNCHES.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "cube"))]
    0
}
