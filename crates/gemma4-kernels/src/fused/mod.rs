//! The project's fused kernels, written once in CubeCL for every GPU runtime Burn has (wgpu:
//! Vulkan and Metal; CUDA), each with its own backward, as a Burn backend extension.
//!
//! - `ops.rs`: the extension trait [`Fused`](ops::Fused) and its routing.
//! - `cube.rs`: the CubeCL implementation; one file per kernel (`rms_norm.rs`,
//!   `geglu.rs`, `softmax.rs`) and what the row kernels share (`rows.rs`).
//! - `autodiff.rs`: the backward of each op, through its backward kernel.
//!
//! The wrappers here pick the kernel on a CubeCL device and the plain ops of
//! [`crate::reference`] everywhere else (the CPU), which are also what the kernels are tested
//! against. `GEMMA4_TUNE_FUSED=0` keeps the plain ops on every device (to compare or to bisect).

#[cfg(feature = "cube")]
mod autodiff;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cube")]
mod geglu;
#[cfg(feature = "cube")]
mod ops;
#[cfg(feature = "cube")]
mod rms_norm;
#[cfg(feature = "cube")]
mod rows;
#[cfg(feature = "cube")]
mod softmax;

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::{Device, Tensor};

use crate::reference;

/// Whether the fused kernels run on `device`: a CubeCL device (wgpu or CUDA, directly or under
/// autodiff) in a build with a GPU backend, unless `GEMMA4_TUNE_FUSED=0`.
pub fn enabled(device: &Device) -> bool {
    #[cfg(feature = "cube")]
    {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let off = *OFF.get_or_init(|| std::env::var("GEMMA4_TUNE_FUSED").is_ok_and(|v| v == "0"));
        !off && crate::device::is_cube(device)
    }
    #[cfg(not(feature = "cube"))]
    {
        let _ = device;
        false
    }
}

/// RMSNorm over the last axis, `x·(mean(x²) + eps)^-½·w`, with the statistics in f32 and the
/// result in `x`'s dtype (HF `Gemma4RMSNorm`). `weight` (any float dtype, used as f32) is the
/// scale; `None` for the scale-free norms. One kernel each way on a GPU; a weight that needs a
/// gradient takes the plain ops.
///
/// # Shapes
/// - x: `[.., d]`, weight: `[d]` → `[.., d]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Option<&Tensor<1>>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if enabled(&x.device())
        && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && weight.is_none_or(|w| !w.is_require_grad())
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        // Without a scale, `x` stands in for it (not read).
        let (weight, scaled) = match weight {
            Some(w) => (w.clone().cast(DType::F32).into_dispatch(), true),
            None => (x.clone().into_dispatch(), false),
        };
        let y = <Dispatch as Fused>::fused_rms_norm(x.into_dispatch(), weight, scaled, eps as f32);
        return Tensor::from_dispatch(y);
    }
    reference::rms_norm(x, weight, eps)
}

/// GeGLU's activation `gelu_tanh(gate)·up` (HF `gelu_pytorch_tanh`), elementwise in the inputs'
/// dtype. One kernel each way on a GPU (f32 inside, rounded once), Burn's plain ops on the CPU.
///
/// # Shapes
/// - gate, up: `[..]` (equal) → `[..]`
pub fn geglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if enabled(&gate.device())
        && matches!(gate.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && up.dtype() == gate.dtype()
        && up.dims() == gate.dims()
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        let h = <Dispatch as Fused>::fused_geglu(gate.into_dispatch(), up.into_dispatch());
        return Tensor::from_dispatch(h);
    }
    reference::geglu(gate, up)
}

/// Attention's `softmax(scores·scale + bias)` over the last axis, in f32, the result in the
/// scores' dtype; `bias` is the additive f32 mask (a constant). One kernel each way on a GPU.
///
/// # Shapes
/// - scores: `[b, n, s, t]`, bias: `[b or 1, 1, s, t]` → `[b, n, s, t]`
pub fn masked_softmax(scores: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
    #[cfg(feature = "cube")]
    if enabled(&scores.device())
        && matches!(scores.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && bias.dtype() == DType::F32
        && !bias.is_require_grad()
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        let p = <Dispatch as Fused>::fused_softmax(
            scores.into_dispatch(),
            bias.into_dispatch(),
            scale as f32,
        );
        return Tensor::from_dispatch(p);
    }
    reference::masked_softmax(scores, bias, scale)
}
