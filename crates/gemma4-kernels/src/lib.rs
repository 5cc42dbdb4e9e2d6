//! Device kernels for gemma4-tune: one home for the kernels the model picks by device.
//!
//! - [`fused`]: the project's CubeCL kernels (RMSNorm, GeGLU, masked softmax, flash attention;
//!   forward and backward) on every GPU runtime, with [`reference`]'s plain ops on the CPU.
//! - [`matmul`] and [`linear`], every matrix product of the model and the adapter. On a
//!   CUDA device, when the crate's `cuda` feature is on, they run through cuBLAS (bf16/f16/f32
//!   inputs, f32 accumulation, f32 as full-precision SGEMM) as a Burn backend extension with its
//!   own backward (`da = dc·bᵀ`, `db = aᵀ·dc`, also through cuBLAS; only operands that need a
//!   gradient get one). Everywhere else, and for any layout the cuBLAS route is not given, they
//!   are Burn's `matmul`, which is also the reference the CUDA path is tested against
//!   (`gemma4-tune bench --check-kernels`).

use burn::tensor::{DType, Tensor};

#[cfg(feature = "cuda")]
mod cublas;
#[cfg(feature = "cube")]
mod device;
pub mod fused;
pub mod reference;
#[cfg(feature = "cube")]
mod stored;
pub mod switches;

pub use reference::AdamwStep;
// The BLAS call's layout arithmetic: used by `cublas`, tested on every build.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod layout;

/// `a·b` over the last two axes; `b`'s leading axes are all 1 (broadcast) or equal to `a`'s.
///
/// # Shapes
/// - a: `[.., m, k]`, b: `[.., k, n]` → `[.., m, n]`
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "cuda")]
    if a.dtype() == b.dtype() && cublas::eligible(&a, &b) {
        let dtype = a.dtype();
        let (sa, sb) = (a.dims(), b.dims());
        if D > 2 && sa[..D - 2] != sb[..D - 2] && sb[..D - 2].iter().all(|&d| d == 1) {
            // A broadcast right operand: one product over the stacked rows of `a`.
            let (rows, k, n) = (sa[..D - 1].iter().product::<usize>(), sa[D - 1], sb[D - 1]);
            let y = cublas::matmul(a.reshape([rows, k]), b.reshape([k, n]), dtype, dtype, 1.0);
            let mut out = sa;
            out[D - 1] = n;
            return y.reshape(out);
        }
        return cublas::matmul(a, b, dtype, dtype, 1.0);
    }
    let (sa, sb) = (a.dims(), b.dims());
    if sb[..D - 2].iter().all(|&d| d == 1) && fused::tile_matmul_enabled(&a.device()) {
        // Stacked rows of `a` times one matrix: the opt-in tensor-core kernel (f16/bf16).
        let (rows, k, n) = (sa[..D - 1].iter().product::<usize>(), sa[D - 1], sb[D - 1]);
        let y = fused::matmul(a.reshape([rows, k]), b.reshape([k, n]));
        let mut out = sa;
        out[D - 1] = n;
        return y.reshape(out);
    }
    a.matmul(b)
}

/// `a·b` of two matrices with the inputs rounded to `compute` and the result in `out`. On the
/// cuBLAS route the casts happen inside the op: the autodiff tape keeps `a` and `b` as given
/// (a bf16 activation is not kept again in f32), f32 accumulates, and each operand's gradient
/// comes back in its own dtype. Elsewhere: plain casts and Burn's `matmul`.
///
/// # Shapes
/// - a: `[m, k]`, b: `[k, n]` → `[m, n]`
pub fn matmul_to(a: Tensor<2>, b: Tensor<2>, compute: DType, out: DType) -> Tensor<2> {
    #[cfg(feature = "cuda")]
    if cublas::eligible(&a, &b) && matches!(compute, DType::F32 | DType::F16 | DType::BF16) {
        return cublas::matmul(a, b, compute, out, 1.0);
    }
    a.cast(compute).matmul(b.cast(compute)).cast(out)
}

/// `x·W + b` over the last axis, `W` kept as `[in, out]`.
///
/// # Shapes
/// - x: `[b, s, in]`, w: `[in, out]`, bias: `[out]` → `[b, s, out]`
pub fn linear(x: Tensor<3>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [b, s, k] = x.dims();
    let n = w.dims()[1];
    let y = matmul(x.reshape([b * s, k]), w).reshape([b, s, n]);
    match bias {
        Some(bias) => y + bias.unsqueeze::<3>(),
        None => y,
    }
}

/// `x·W` over the last axis as [`matmul_to`] computes it: inputs rounded to `compute`, the
/// result in `out`.
///
/// # Shapes
/// - x: `[b, s, in]`, w: `[in, out]` → `[b, s, out]`
pub fn linear_to(x: Tensor<3>, w: Tensor<2>, compute: DType, out: DType) -> Tensor<3> {
    let [b, s, k] = x.dims();
    let n = w.dims()[1];
    matmul_to(x.reshape([b * s, k]), w, compute, out).reshape([b, s, n])
}

/// `c + alpha·(a·b)`, in `c`'s dtype, the product computed as [`matmul_to`] does. On the cuBLAS
/// route the product is added into `c`'s buffer as it is written (`beta = 1`, `alpha` applied
/// in f32): no separate scale or add, and `c`'s gradient is the output's. Elsewhere: `b` scaled
/// by `alpha`, then the plain product and add.
///
/// # Shapes
/// - a: `[m, k]`, b: `[k, n]`, c: `[m, n]` → `[m, n]`
pub fn matmul_add_to(
    a: Tensor<2>,
    b: Tensor<2>,
    c: Tensor<2>,
    compute: DType,
    alpha: f64,
) -> Tensor<2> {
    #[cfg(feature = "cuda")]
    if cublas::eligible(&a, &b) && matches!(compute, DType::F32 | DType::F16 | DType::BF16) {
        return cublas::matmul_add(a, b, c, compute, alpha as f32);
    }
    let dtype = c.dtype();
    c + a.cast(compute).matmul(b.mul_scalar(alpha).cast(compute)).cast(dtype)
}

/// `c + alpha·(x·W)` over the last axis, as [`matmul_add_to`] computes it.
///
/// # Shapes
/// - x: `[b, s, in]`, w: `[in, out]`, c: `[b, s, out]` → `[b, s, out]`
pub fn linear_add_to(
    x: Tensor<3>,
    w: Tensor<2>,
    c: Tensor<3>,
    compute: DType,
    alpha: f64,
) -> Tensor<3> {
    let [b, s, k] = x.dims();
    let n = w.dims()[1];
    let c = c.reshape([b * s, n]);
    matmul_add_to(x.reshape([b * s, k]), w, c, compute, alpha).reshape([b, s, n])
}

/// `base + scale·(x·aᵀ)·bᵀ` over the last axis (a frozen projection's output with LoRA's
/// change; `x` in its own dtype, `a`, `b` f32, the result in `base`'s dtype) as one op
/// (`fused::low_rank_add`: no f32 copy of `x`, the change added as the output is written, the
/// factors' gradients summed over the rows as `x` and `dy` lie) where [`fuses_low_rank_add`]
/// says so and `a`, `b` are f32. `None` otherwise, and the caller composes [`linear_to`] and
/// [`linear_add_to`].
///
/// # Shapes
/// - x: `[b, s, in]`, a: `[r, in]`, b: `[out, r]`, base: `[b, s, out]` → `[b, s, out]`
pub fn low_rank_add(
    x: &Tensor<3>,
    a: &Tensor<2>,
    b: &Tensor<2>,
    base: &Tensor<3>,
    scale: f64,
) -> Option<Tensor<3>> {
    let f32s = a.dtype() == DType::F32 && b.dtype() == DType::F32;
    if !(f32s && fuses_low_rank_add(&x.device(), a.dims()[0])) {
        return None;
    }
    let ([bs, s, k], out) = (x.dims(), b.dims()[0]);
    let (x, base) = (x.clone().reshape([bs * s, k]), base.clone().reshape([bs * s, out]));
    let y = fused::low_rank_add(x, a.clone(), b.clone(), base, scale);
    Some(y.reshape([bs, s, out]))
}

/// Whether [`low_rank_add`] runs as one op on `device` for a rank-`rank` change: the fused
/// kernels' devices without the cuBLAS route (wgpu: Vulkan, Metal), ranks up to
/// [`fused::MAX_RANK`], unless `GEMMA4_TUNE_TALL=0`. Measured on the H200 through Vulkan
/// (docs/performance.md): E2B 4 × 2048 f16, r 16, 4,903 → 5,925 tokens/s and 69.0 → 59.3 GiB
/// against the composed ops.
pub fn fuses_low_rank_add(device: &burn::tensor::Device, rank: usize) -> bool {
    !switches::tall_off()
        && rank <= fused::MAX_RANK
        && fused::enabled(device)
        && !uses_cublas(device)
}

/// `x·w + alpha·(x·aᵀ)·bᵀ` over the last axis as one op whose products share one ordering
/// handoff each way (a frozen projection `w` with a low-rank change, LoRA's shape), when
/// [`fuses_low_rank`] says this device takes it; `None` otherwise, and the caller composes
/// [`linear`], [`linear_to`] and [`linear_add_to`]. The factors are rounded to `x`'s dtype for
/// the products (f32 accumulation); the result and `x`'s gradient are in `x`'s dtype, the
/// factors' gradients in theirs (f32); `w` gets none.
///
/// # Shapes
/// - x: `[b, s, in]`, w: `[in, out]`, a: `[r, in]`, b: `[out, r]` → `[b, s, out]`
pub fn low_rank_linear(
    x: Tensor<3>,
    w: Tensor<2>,
    a: Tensor<2>,
    b: Tensor<2>,
    alpha: f64,
) -> Option<Tensor<3>> {
    if !fuses_low_rank(&x, &w) {
        return None;
    }
    let [bt, s, k] = x.dims();
    let n = w.dims()[1];
    #[cfg(feature = "cuda")]
    return Some(
        cublas::low_rank(x.reshape([bt * s, k]), w, a, b, alpha as f32).reshape([bt, s, n]),
    );
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (a, b, alpha, bt, s, k, n);
        None
    }
}

/// Whether [`low_rank_linear`] runs as one op here: the cuBLAS route, `x` and `w` of one dtype
/// (bf16 or f32), unless `GEMMA4_TUNE_LOW_RANK=0` (the composed ops, to compare).
pub fn fuses_low_rank(x: &Tensor<3>, w: &Tensor<2>) -> bool {
    let off = switches::low_rank_off();
    #[cfg(feature = "cuda")]
    let route = cublas::eligible(w, w);
    #[cfg(not(feature = "cuda"))]
    let route = false;
    !off && route && x.dtype() == w.dtype() && matches!(x.dtype(), DType::BF16 | DType::F32)
}

/// Whether the adapter's small products read bf16 activations as they are (no f32 copy made
/// or kept): on the cuBLAS route for bf16 models, unless `GEMMA4_TUNE_LORA_INPUTS=f32`.
pub fn bf16_lora_inputs(device: &burn::tensor::Device, dtype: DType) -> bool {
    dtype == DType::BF16 && !switches::lora_inputs_f32() && uses_cublas(device)
}

/// Whether this build takes the cuBLAS route on `device` (for f32, f16 and bf16 products).
pub fn uses_cublas(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        cublas::is_cuda(device)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, Tolerance, module};

    use super::{linear, matmul};

    #[test]
    fn linear_matches_burns_linear() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 3, 5], Distribution::Default, &device);
        let w = Tensor::<2>::random([5, 4], Distribution::Default, &device);
        let b = Tensor::<1>::random([4], Distribution::Default, &device);
        let ours = linear(x.clone(), w.clone(), Some(b.clone())).into_data();
        let reference = module::linear(x, w, Some(b)).into_data();
        ours.assert_approx_eq::<f32>(&reference, Tolerance::default());
    }

    #[test]
    fn batched_matmul_matches_burns() {
        let device = Device::flex();
        let a = Tensor::<4>::random([2, 3, 4, 5], Distribution::Default, &device);
        let b = Tensor::<4>::random([2, 3, 6, 5], Distribution::Default, &device);
        let ours = matmul(a.clone(), b.clone().swap_dims(2, 3)).into_data();
        ours.assert_approx_eq::<f32>(
            &a.matmul(b.swap_dims(2, 3)).into_data(),
            Tolerance::default(),
        );
    }
}
