//! The extension trait of the project's fused kernels. Burn's `backend_extension` generates its
//! `Dispatch` routing: CubeCL devices (wgpu, CUDA) reach `cube.rs`, autodiff-wrapped ones
//! `autodiff.rs`. The CPU never calls it: `super` keeps the plain ops there.

use crate::reference::{AttentionRule, TokenMasks};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, backend_extension};
use burn::tensor::{DType, Int, Tensor};

/// The partial sums [`Fused::fused_square_sums`] writes per tensor (one per cube).
pub const SQUARE_SUM_PARTS: u32 = 16;
/// Tensors per launch of [`Fused::fused_square_sums`] and of [`Fused::fused_adamw`] (seven
/// buffers each; Metal binds 31 storage buffers).
pub const SQUARE_SUM_GROUP: usize = 8;
pub const ADAMW_GROUP: usize = 4;

/// One AdamW step's scalars (PyTorch `torch.optim.AdamW`), for [`Fused::fused_adamw`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamwScalars {
    pub beta1: f32,
    pub beta2: f32,
    /// `1 − beta1`, `1 − beta2`, rounded once from f64 (as the plain ops' scalars are).
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// `1 − beta1^t` and `1 − beta2^t` at step `t`.
    pub correction1: f32,
    pub correction2: f32,
    pub lr: f32,
    pub eps: f32,
    /// `1 − lr·weight_decay` (1: no decay).
    pub decay: f32,
    /// The first step: no previous moments (the `m`, `v` given are not read).
    pub first: bool,
}

/// Flash attention's mask rule and scale, for [`Fused::fused_flash_attention`]: query `i` (at
/// position `q_pos0 + i`) sees key `j` (at `k_pos0 + j`) unless the position rule hides it
/// (gemma4-model's `MaskSpec::masked`), the key is padding (`has_valid`: `valid[b, j] == 0`) or
/// its segment differs (`has_segments`: `segments[b, j] != segments[b, i + q_pos0 − k_pos0]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlashRule {
    pub q_pos0: i32,
    pub k_pos0: i32,
    /// Keys after the query are hidden; else bidirectional.
    pub causal: bool,
    /// Causal: keys `q − k ≥ w` hidden; bidirectional: `|q − k| > w` hidden.
    pub window: Option<i32>,
    /// Multiplies `q·k`.
    pub scale: f32,
    /// Whether the `valid` and `segments` tensors are read (else placeholders).
    pub has_valid: bool,
    pub has_segments: bool,
}

/// Kernels written once in CubeCL for every GPU runtime Burn has.
#[backend_extension(Cube, Autodiff)]
pub trait Fused: Backend {
    /// `a·b` of two matrices on tensor cores (`matmul_tc.rs`), the result in their dtype: f16
    /// or bf16 on a device with 16 × 16 × 16 `cmma`, `m`, `n`, `k` multiples of 4, each operand
    /// contiguous or a transposed view of a contiguous tensor (read as it lies). Anything else
    /// is Burn's matmul. The backward is the same op: `da = dc·bᵀ`, `db = aᵀ·dc`, each only
    /// where the operand is tracked.
    ///
    /// # Shapes
    /// - a: `[m, k]`, b: `[k, n]` → `[m, n]`
    fn fused_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// A frozen projection's output with LoRA's change added, `base + scale·(x·aᵀ)·bᵀ`, in
    /// `base`'s dtype; `x` in its own dtype (no f32 copy), `a`, `b` f32, rank ≤ 32. Forward:
    /// `xa = x·aᵀ` ([`Fused::fused_thin_product`]), then [`Fused::fused_rank_update`].
    /// Backward: `dbase = dy`, `dxa = s·dy·b` (thin), `dx = dxa·a` (a rank update in `x`'s
    /// dtype), and the factors' `db = s·dyᵀ·xa`, `da = dxaᵀ·x` through
    /// [`Fused::fused_tall_product`], which reads `x` and `dy` as they lie.
    ///
    /// # Shapes
    /// - x: `[n, in]`, a: `[r, in]`, b: `[out, r]`, base: `[n, out]` → `[n, out]`
    fn fused_low_rank_add(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        base: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `scale·x·wᵀ` in f32 for a narrow f32 `w` (≤ 32 rows), `x` read in its dtype
    /// (`thin.rs`). Not differentiable.
    ///
    /// # Shapes
    /// - x: `[n, k]`, w: `[r, k]` → `[n, r]`
    fn fused_thin_product(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `base + scale·xa·bᵀ` for a narrow f32 `xa`, in one pass over `base` (`rank_update.rs`);
    /// without a base (`has_base` false: `base` is only a tensor of the output's dtype)
    /// `scale·xa·bᵀ`. Not differentiable.
    ///
    /// # Shapes
    /// - base: `[n, out]`, xa: `[n, r]`, b: `[out, r]` → `[n, out]`
    fn fused_rank_update(
        base: FloatTensor<Self>,
        xa: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        has_base: bool,
    ) -> FloatTensor<Self>;

    /// `scale·wideᵀ·narrow` (`wide_rows`, `[P, r]`) or `scale·narrowᵀ·wide` (`[r, P]`) of two
    /// tall matrices summed over their rows in chunks (`tall.rs`): `wide` in its dtype,
    /// `narrow` f32 with ≤ 64 columns. Not differentiable.
    ///
    /// # Shapes
    /// - wide: `[k, P]`, narrow: `[k, r]` → `[P, r]` or `[r, P]`
    fn fused_tall_product(
        wide: FloatTensor<Self>,
        narrow: FloatTensor<Self>,
        wide_rows: bool,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// RMSNorm over the last axis: `x·(mean(x²) + eps)^-½·w`, f32 inside, `x`'s dtype out. The
    /// scale `w` is a constant (no gradient); without `scaled` it is not read (pass any tensor
    /// of the device: the extension macro takes no optional tensors).
    ///
    /// # Shapes
    /// - x: `[.., d]`, weight: `[d]` (f32) → `[.., d]`
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scaled: bool,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Fused::fused_rms_norm`] with respect to `x`, given the output's `dy`.
    ///
    /// # Shapes
    /// - x, dy: `[.., d]`, weight: `[d]` (f32) → `[.., d]`
    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scaled: bool,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// GeGLU's activation `gelu_tanh(gate)·up`, elementwise, f32 inside, the inputs' dtype out.
    ///
    /// # Shapes
    /// - gate, up: `[..]` (equal) → `[..]`
    fn fused_geglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradients of [`Fused::fused_geglu`] with respect to `gate` and `up`, given `dh`.
    ///
    /// # Shapes
    /// - gate, up, dh: `[..]` (equal) → (`[..]`, `[..]`)
    fn fused_geglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// f16's GeGLU (`geglu.rs`): `gelu_tanh(gate)·up` in f32, divided per row by the smallest
    /// power of two `s ≥ 1` that brings the row's largest magnitude to at most
    /// [`crate::reference::F16_ROW_ROOM`], in the inputs' dtype, and `s` (f32, a constant).
    ///
    /// # Shapes
    /// - gate, up: `[.., d]` (equal) → (`[.., d]`, `[.., 1]`)
    fn fused_geglu_scaled(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of [`Fused::fused_geglu_scaled`] with respect to `gate` and `up`, given
    /// its row scales and `dh`.
    ///
    /// # Shapes
    /// - gate, up, dh: `[.., d]` (equal), scale: `[.., 1]` → (`[.., d]`, `[.., d]`)
    fn fused_geglu_scaled_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `softmax(scores·scale + bias)` over the last axis in f32, the scores' dtype out; the
    /// bias (f32, additive mask) is a constant.
    ///
    /// # Shapes
    /// - scores: `[b, n, s, t]`, bias: `[b or 1, 1, s, t]` → `[b, n, s, t]`
    fn fused_softmax(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Fused::fused_softmax`] with respect to the scores, from its output
    /// `probs` and the output's gradient `dprobs`.
    ///
    /// # Shapes
    /// - probs, dprobs: `[.., t]` → `[.., t]`
    fn fused_softmax_backward(
        probs: FloatTensor<Self>,
        dprobs: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// One AdamW step of up to [`ADAMW_GROUP`] f32 tensors (`p`, its gradient `g` times
    /// `factor[0]`, moments `m`, `v`): the new parameters and moments, `(p0, m0, v0, p1, …)`.
    /// The factor stays on the device (no read-back before the update). Items from `count` on are
    /// not read (pass any tensor) and come back as given. Not differentiable. (Fixed slots:
    /// Burn's extension ops take no lists of tensors.)
    ///
    /// # Shapes
    /// - p, g, m, v of an item: `[r, c]` (equal), factor: `[1]` (f32) → three of `[r, c]` per item
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fused_adamw(
        p0: FloatTensor<Self>,
        g0: FloatTensor<Self>,
        m0: FloatTensor<Self>,
        v0: FloatTensor<Self>,
        p1: FloatTensor<Self>,
        g1: FloatTensor<Self>,
        m1: FloatTensor<Self>,
        v1: FloatTensor<Self>,
        p2: FloatTensor<Self>,
        g2: FloatTensor<Self>,
        m2: FloatTensor<Self>,
        v2: FloatTensor<Self>,
        p3: FloatTensor<Self>,
        g3: FloatTensor<Self>,
        m3: FloatTensor<Self>,
        v3: FloatTensor<Self>,
        factor: FloatTensor<Self>,
        count: u32,
        scalars: AdamwScalars,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// `Σ t²` (f32) of up to [`SQUARE_SUM_GROUP`] tensors as [`SQUARE_SUM_PARTS`] partial sums
    /// each (their sum is the tensor's), tensor `k`'s at `out[(first + k)·PARTS ..]`; slots from
    /// `count` on are not read (pass any tensor). Returns `out`. Not differentiable.
    ///
    /// # Shapes
    /// - each tensor: `[r, c]`, out: `[n · SQUARE_SUM_PARTS]` (f32) → out
    #[allow(clippy::too_many_arguments)]
    fn fused_square_sums(
        t0: FloatTensor<Self>,
        t1: FloatTensor<Self>,
        t2: FloatTensor<Self>,
        t3: FloatTensor<Self>,
        t4: FloatTensor<Self>,
        t5: FloatTensor<Self>,
        t6: FloatTensor<Self>,
        t7: FloatTensor<Self>,
        out: FloatTensor<Self>,
        first: u32,
        count: u32,
    ) -> FloatTensor<Self>;

    /// The LM loss of each row of raw head logits: softcap `cap·tanh(x/cap)` (when `has_cap`),
    /// log-sum-exp, minus the label's logit. Returns the losses and the log-sum-exps (f32; the
    /// latter not differentiable).
    ///
    /// # Shapes
    /// - raw: `[n, V]`, labels: `[n]` → (`[n]`, `[n]`)
    fn fused_cross_entropy(
        raw: FloatTensor<Self>,
        labels: IntTensor<Self>,
        cap: f32,
        has_cap: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of [`Fused::fused_cross_entropy`]'s losses with respect to `raw` (given
    /// `dloss` and the log-sum-exps) in `split` column blocks of `V` (which it divides).
    ///
    /// # Shapes
    /// - raw: `[n, V]`, labels, lse, dloss: `[n]` → `[n, V]` (split 1) or `[split, n, V/split]`
    fn fused_cross_entropy_backward(
        raw: FloatTensor<Self>,
        labels: IntTensor<Self>,
        lse: FloatTensor<Self>,
        dloss: FloatTensor<Self>,
        cap: f32,
        has_cap: bool,
        split: usize,
    ) -> FloatTensor<Self>;

    /// Rotary position embedding `x·cos + rotate_half(x)·sin`, `rotate_half([x1, x2]) =
    /// [−x2, x1]`: f32 inside, `x`'s dtype out; `cos` and `sin` are constants (f32).
    ///
    /// # Shapes
    /// - x: `[b, s, h, d]`, cos, sin: `[1 or b, s, 1, d]` → `[b, s, h, d]`
    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The gradient of [`Fused::fused_rope`] with respect to `x`, given the output's `dy`.
    ///
    /// # Shapes
    /// - dy: `[b, s, h, d]`, cos, sin: `[1 or b, s, 1, d]` → `[b, s, h, d]`
    fn fused_rope_backward(
        dy: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Attention `softmax(q·kᵀ·scale + mask)·v` with the mask of `rule` computed in the kernel;
    /// grouped KV heads read in place. Returns the output (q's dtype) and the per-row
    /// log-sum-exp (f32, not differentiable). `valid` and `segments` are read only when the rule
    /// says so (else pass any int tensor of the device).
    ///
    /// # Shapes
    /// - q: `[b, h, s, d]`, k, v: `[b, kv, t, d]`, valid, segments: `[b, t]` →
    ///   (`[b, h, s, d]`, `[b, h, s]`)
    fn fused_flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        valid: IntTensor<Self>,
        segments: IntTensor<Self>,
        rule: FlashRule,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of [`Fused::fused_flash_attention`] with respect to q, k and v, from its
    /// inputs, its output `o` and log-sum-exp `lse`, and the output's gradient `dout`. Not
    /// differentiable.
    ///
    /// # Shapes
    /// - q, o, dout: `[b, h, s, d]`, k, v: `[b, kv, t, d]`, lse: `[b, h, s]` →
    ///   (`[b, h, s, d]`, `[b, kv, t, d]`, `[b, kv, t, d]`)
    #[allow(clippy::too_many_arguments)]
    fn fused_flash_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        valid: IntTensor<Self>,
        segments: IntTensor<Self>,
        rule: FlashRule,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FlashRule {
    /// The kernel's rule where the kernel takes these inputs: one float dtype, shapes that
    /// fit, masks of `[b, t]` and one int dtype, positions that fit i32 (the caller checks
    /// that the fused kernels run on the device).
    pub fn for_inputs(
        q: &Tensor<4>,
        k: &Tensor<4>,
        v: &Tensor<4>,
        rule: &AttentionRule,
        masks: TokenMasks,
    ) -> Option<Self> {
        let ([b, h, _, d], [kb, kv, t, kd]) = (q.dims(), k.dims());
        let given: Vec<&Tensor<2, Int>> =
            [masks.valid, masks.segments].into_iter().flatten().collect();
        let fits = matches!(q.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && k.dtype() == q.dtype()
            && v.dtype() == q.dtype()
            && v.dims() == k.dims()
            && kb == b
            && kd == d
            && kv > 0
            && h.is_multiple_of(kv)
            && given.iter().all(|m| m.dims() == [b, t] && m.dtype() == given[0].dtype());
        // Positions and windows up to 2^30 keep the kernel's i32 range arithmetic exact.
        const LIMIT: usize = 1 << 30;
        let pos = |p: usize| (p <= LIMIT).then_some(p as i32);
        Some(Self {
            q_pos0: pos(rule.offset)?,
            k_pos0: pos(rule.key_start)?,
            causal: rule.causal,
            window: rule.window.map(|w| w.min(LIMIT) as i32),
            scale: rule.scale as f32,
            has_valid: masks.valid.is_some(),
            has_segments: masks.segments.is_some(),
        })
        .filter(|_| fits)
    }
}
