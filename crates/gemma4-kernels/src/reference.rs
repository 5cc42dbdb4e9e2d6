//! The plain-op reference of each fused kernel: Burn's own ops, differentiated by Burn's
//! autodiff. The CPU runs these; the kernels in `fused` are tested against them.

use burn::tensor::{DType, Tensor, activation::gelu_approximate, activation::softmax};

/// RMSNorm over the last axis: `x·(mean(x²) + eps)^-½·w` in f32, cast back to `x`'s dtype.
///
/// # Shapes
/// - x: `[.., d]`, weight: `[d]` → `[.., d]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Option<&Tensor<1>>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let mean_sq = x.clone().square().mean_dim(D - 1).add_scalar(eps);
    let mut y = x * mean_sq.powf_scalar(-0.5);
    if let Some(w) = weight {
        y = y * w.clone().cast(DType::F32).unsqueeze::<D>();
    }
    y.cast(dtype)
}

/// GeGLU's activation `gelu_tanh(gate)·up`, Burn's ops in the inputs' dtype.
///
/// # Shapes
/// - gate, up: `[..]` (equal) → `[..]`
pub fn geglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    gelu_approximate(gate) * up
}

/// Attention's `softmax(scores·scale + bias)` over the last axis in f32, cast back to the
/// scores' dtype.
///
/// # Shapes
/// - scores: `[b, n, s, t]`, bias: `[b or 1, 1, s, t]` (f32) → `[b, n, s, t]`
pub fn masked_softmax(scores: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
    let dtype = scores.dtype();
    let mut scores = scores.cast(DType::F32);
    if scale != 1.0 {
        scores = scores.mul_scalar(scale as f32);
    }
    softmax(scores + bias, 3).cast(dtype)
}
