//! The project's fused kernels, written once in CubeCL for every GPU runtime Burn has (wgpu:
//! Vulkan and Metal; CUDA), each with its own backward, as a Burn backend extension.
//!
//! - `ops.rs`: the extension trait [`Fused`](ops::Fused) and its routing.
//! - `cube.rs`: the CubeCL implementation; one file per kernel (`rms_norm.rs`, `geglu.rs`,
//!   `rope.rs`, `softmax.rs`, `flash_attention.rs` with `flash_backward.rs` and the tensor-core
//!   `flash_tc*.rs`, `adamw.rs`, `square_sum.rs`, `cross_entropy.rs`, `matmul_tc.rs`, and LoRA's
//!   `thin.rs`, `rank_update.rs`, `tall.rs`) and what the row kernels share (`rows.rs`).
//! - `autodiff.rs`: the backward of each op, through its backward kernel (the products' in
//!   `product_grads.rs`, flash attention's in `flash_grads.rs`, GeGLU's in `geglu_grads.rs`);
//!   `products.rs`: the product
//!   ops' wrappers and switches.
//!
//! The wrappers here pick the kernel on a CubeCL device and the plain ops of
//! [`crate::reference`] everywhere else (the CPU), which are also what the kernels are tested
//! against. `GEMMA4_TUNE_FUSED=0` keeps the plain ops on every device (to compare or to bisect).

#[cfg(feature = "cube")]
mod adamw;
#[cfg(feature = "cube")]
mod autodiff;
#[cfg(feature = "cube")]
mod cross_entropy;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cube")]
mod flash_attention;
#[cfg(feature = "cube")]
mod flash_backward;
#[cfg(feature = "cube")]
mod flash_grads;
#[cfg(feature = "cube")]
mod flash_tc;
#[cfg(feature = "cube")]
mod flash_tc_backward;
#[cfg(feature = "cube")]
mod geglu;
#[cfg(feature = "cube")]
mod geglu_grads;
#[cfg(feature = "cube")]
mod matmul_tc;
#[cfg(feature = "cube")]
mod ops;
mod optimizer;
#[cfg(feature = "cube")]
mod product_grads;
mod products;
#[cfg(feature = "cube")]
mod rank_update;
#[cfg(feature = "cube")]
mod rms_norm;
#[cfg(feature = "cube")]
mod rope;
#[cfg(feature = "cube")]
mod row_grads;
#[cfg(feature = "cube")]
mod rows;
#[cfg(feature = "cube")]
mod softmax;
#[cfg(feature = "cube")]
mod square_sum;
#[cfg(feature = "cube")]
mod tall;
#[cfg(feature = "cube")]
mod thin;
#[cfg(feature = "cube")]
mod thin_tc;

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::{Device, Int, Tensor};

use crate::reference::{self, AttentionRule, TokenMasks};
pub use optimizer::{AdamwItem, adamw, adamw_many, square_sums};
pub use products::{
    MAX_RANK, low_rank_add, matmul, tall_launches, tile_matmul_enabled, tile_matmul_launches,
};

/// Whether the fused kernels run on `device`: a CubeCL device (wgpu or CUDA, directly or under
/// autodiff) in a build with a GPU backend, unless `GEMMA4_TUNE_FUSED=0`.
pub fn enabled(device: &Device) -> bool {
    #[cfg(feature = "cube")]
    {
        !crate::switches::fused_off() && crate::device::is_cube(device)
    }
    #[cfg(not(feature = "cube"))]
    {
        let _ = device;
        false
    }
}

/// Whether the model should attend through [`flash_attention`]'s kernel on `device`: only when
/// asked (`GEMMA4_TUNE_FLASH=1`) and the fused kernels are [`enabled`] there. Off by default:
/// on an H200 (CUDA, bf16, E2B 4 × 2048) it took the step from 0.54 to 1.80 s (backward 0.18 →
/// 1.16 s) for 36.4 GiB instead of 42.7 (docs/performance.md): its scores are one unit's dot
/// products from shared memory, without tensor cores. It is what makes memory linear in the
/// sequence (E2B batch 1 at 32,768 tokens: 120 GiB).
pub fn flash_enabled(device: &Device) -> bool {
    crate::switches::flash_on() && enabled(device)
}

/// How many times [`flash_attention`] has run its forward on tensor cores in this process
/// (f16/bf16, head dims a multiple of 64, a device with 16 × 16 × 16 cooperative matrices).
pub fn flash_tensor_core_launches() -> u64 {
    #[cfg(feature = "cube")]
    return flash_tc::LAUNCHES.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "cube"))]
    0
}

/// How many times the adapter's `x·Aᵀ` or `dy·B` has run on tensor cores in this process
/// (f16/bf16 activations, ranks up to 16, a device with 16 × 16 × 16 cooperative matrices).
pub fn thin_tensor_core_launches() -> u64 {
    #[cfg(feature = "cube")]
    return thin_tc::LAUNCHES.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "cube"))]
    0
}

/// Whether `GEMMA4_TUNE_FLASH_TC=0` keeps flash attention off the tensor cores (its scalar
/// kernels everywhere, to compare or to bisect).
#[cfg(feature = "cube")]
fn tensor_cores_off() -> bool {
    crate::switches::flash_tensor_cores_off()
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
    if geglu_fuses(&gate, &up) {
        use burn::backend::Dispatch;
        use ops::Fused;
        let h = <Dispatch as Fused>::fused_geglu(gate.into_dispatch(), up.into_dispatch());
        return Tensor::from_dispatch(h);
    }
    reference::geglu(gate, up)
}

/// Whether GeGLU's kernels take `gate` and `up`: a device of the fused kernels, one float dtype
/// (f32, f16 or bf16) and one shape.
#[cfg(feature = "cube")]
fn geglu_fuses<const D: usize>(gate: &Tensor<D>, up: &Tensor<D>) -> bool {
    enabled(&gate.device())
        && matches!(gate.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && up.dtype() == gate.dtype()
        && up.dims() == gate.dims()
}

/// f16's GeGLU: `gelu_tanh(gate)·up` formed in f32 and divided per row (token) by a power of
/// two `s ≥ 1` that brings the row into f16's range (its largest magnitude at most
/// [`reference::F16_ROW_ROOM`]), in the inputs' dtype, and the row scales `s` (f32, off the
/// tape: each row of `down(h)·s` is `down(h·s)`'s, a projection maps rows independently). One
/// kernel each way on a GPU (`geglu.rs`: gate and up kept as they are, no f32 copies); on the
/// CPU [`reference::geglu_scaled`].
///
/// # Shapes
/// - gate, up: `[b, s, d]` (equal) → (`[b, s, d]`, `[b, s, 1]`)
pub fn geglu_scaled(gate: Tensor<3>, up: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    #[cfg(feature = "cube")]
    if geglu_fuses(&gate, &up) {
        use burn::backend::Dispatch;
        use ops::Fused;
        let (h, s) =
            <Dispatch as Fused>::fused_geglu_scaled(gate.into_dispatch(), up.into_dispatch());
        return (Tensor::from_dispatch(h), Tensor::from_dispatch(s));
    }
    reference::geglu_scaled(gate, up)
}

/// Rotary position embedding `x·cos + rotate_half(x)·sin` (HF `apply_rotary_pos_emb`), in
/// `x`'s dtype; `cos` and `sin` are constant f32 tables. One kernel each way on a GPU.
///
/// # Shapes
/// - x: `[b, s, h, d]`, cos, sin: `[1 or b, s, 1, d]` → `[b, s, h, d]`
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "cube")]
    if enabled(&x.device())
        && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && cos.dtype() == DType::F32
        && sin.dtype() == DType::F32
        && x.dims()[3].is_multiple_of(2)
        && cos.dims() == sin.dims()
        && cos.dims()[1..] == [x.dims()[1], 1, x.dims()[3]]
        && (cos.dims()[0] == 1 || cos.dims()[0] == x.dims()[0])
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        let (cos, sin) = (cos.clone().into_dispatch(), sin.clone().into_dispatch());
        return Tensor::from_dispatch(<Dispatch as Fused>::fused_rope(x.into_dispatch(), cos, sin));
    }
    reference::rope(x, cos, sin)
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

/// The LM loss of each row of raw head logits (the head's dtype): the final softcap
/// `cap·tanh(x/cap)` when given, then `−log softmax` at the label, in f32. One kernel each way
/// on a GPU (the `[n, V]` f32 logits are never written); the plain ops elsewhere.
///
/// # Shapes
/// - raw: `[n, V]`, labels: `[n]` → `[n]`
pub fn softcap_cross_entropy(
    raw: Tensor<2>,
    labels: Tensor<1, Int>,
    cap: Option<f64>,
) -> Tensor<1> {
    #[cfg(feature = "cube")]
    if enabled(&raw.device()) && matches!(raw.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        use burn::backend::Dispatch;
        use ops::Fused;
        let (loss, _lse) = <Dispatch as Fused>::fused_cross_entropy(
            raw.into_dispatch(),
            labels.into_dispatch(),
            cap.unwrap_or(1.0) as f32,
            cap.is_some(),
        );
        return Tensor::from_dispatch(loss);
    }
    reference::softcap_cross_entropy(raw, labels, cap)
}

/// [`softcap_cross_entropy`]'s losses and their gradient with respect to `raw` for the
/// losses' gradient `dloss`, without a tape: one kernel each way on a GPU, the plain ops'
/// formula elsewhere. The gradient comes in `raw`'s dtype as `split` column blocks (`split`
/// divides `V`), ready for a batched product with the head's `[split, V/split, e]` rows.
///
/// # Shapes
/// - raw: `[n, V]`, labels, dloss: `[n]` → (`[n]`, `[split, n, V/split]`)
pub fn softcap_cross_entropy_grad(
    raw: Tensor<2>,
    labels: Tensor<1, Int>,
    cap: Option<f64>,
    dloss: Tensor<1>,
    split: usize,
) -> (Tensor<1>, Tensor<3>) {
    #[cfg(feature = "cube")]
    if enabled(&raw.device()) && matches!(raw.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        use burn::backend::Dispatch;
        use ops::Fused;
        let [n, v] = raw.dims();
        let (raw, labels) = (raw.into_dispatch(), labels.into_dispatch());
        let (c, has_cap) = (cap.unwrap_or(1.0) as f32, cap.is_some());
        let (loss, lse) =
            <Dispatch as Fused>::fused_cross_entropy(raw.clone(), labels.clone(), c, has_cap);
        let draw = <Dispatch as Fused>::fused_cross_entropy_backward(
            raw,
            labels,
            lse,
            dloss.into_dispatch(),
            c,
            has_cap,
            split,
        );
        let draw = Tensor::<3>::from_dispatch(draw).reshape([split, n, v / split]);
        return (Tensor::from_dispatch(loss), draw);
    }
    reference::softcap_cross_entropy_grad(raw, labels, cap, dloss, split)
}

/// Attention `softmax(q·kᵀ·scale + mask)·v` with the mask of `rule` and `masks` computed in the
/// kernel (no `[s, t]` scores or mask in memory) and grouped KV heads read in place; f32 math
/// and online softmax, the result in q's dtype. A query that sees no key gives zeros, and
/// its gradients are zero. On a GPU one kernel forward (it keeps the per-row log-sum-exp) and
/// two backward; the gradients reach q, k and v (for KV-shared layers, the donor's k and v).
/// Elsewhere [`reference::flash_attention`].
///
/// # Shapes
/// - q: `[b, h, s, d]`, k, v: `[b, kv, t, d]` (`kv` divides `h`), masks: `[b, t]` →
///   `[b, h, s, d]`
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    rule: &AttentionRule,
    masks: TokenMasks,
) -> Tensor<4> {
    #[cfg(feature = "cube")]
    if let Some(flash) =
        ops::FlashRule::for_inputs(&q, &k, &v, rule, masks).filter(|_| enabled(&q.device()))
    {
        use burn::backend::Dispatch;
        use ops::Fused;
        // The kernel reads an absent mask nowhere: any int tensor of the device stands in.
        let stand_in = masks.valid.or(masks.segments).cloned();
        let stand_in = stand_in.unwrap_or_else(|| Tensor::<2, Int>::zeros([1, 1], &q.device()));
        let valid = masks.valid.cloned().unwrap_or_else(|| stand_in.clone());
        let segments = masks.segments.cloned().unwrap_or(stand_in);
        let (o, _lse) = <Dispatch as Fused>::fused_flash_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            valid.into_dispatch(),
            segments.into_dispatch(),
            flash,
        );
        return Tensor::from_dispatch(o);
    }
    reference::flash_attention(q, k, v, rule, masks)
}
