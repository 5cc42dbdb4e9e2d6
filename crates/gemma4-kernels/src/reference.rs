//! The plain-op reference of each fused kernel: Burn's own ops, differentiated by Burn's
//! autodiff. The CPU runs these; the kernels in `fused` are tested against them.

use burn::tensor::{
    Bool, DType, IndexingUpdateOp, Int, Tensor,
    activation::{gelu_approximate, log_softmax, softmax},
};

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

/// The largest magnitude f16's row-scaled GeGLU leaves in a row: `2¹⁴`, room for the down
/// projection's sums in f16.
pub const F16_ROW_ROOM: f32 = 16384.0;

/// f16's GeGLU (`fused::geglu_scaled`): `gelu_tanh(gate)·up` in f32, divided per row by
/// [`f16_row_scale`], in the inputs' dtype, and the scales.
///
/// # Shapes
/// - gate, up: `[b, s, d]` (equal) → (`[b, s, d]`, `[b, s, 1]`)
pub fn geglu_scaled(gate: Tensor<3>, up: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let dtype = gate.dtype();
    let act = geglu(gate.cast(DType::F32), up.cast(DType::F32));
    let scale = f16_row_scale(&act);
    (act.div(scale.clone()).cast(dtype), scale)
}

/// Per row (token), a power of two `s ≥ 1` with `max|x_row| / s ≤` [`F16_ROW_ROOM`], as a
/// broadcastable `[b, s, 1]` tensor, off the tape. Per row, not one scale for the whole tensor:
/// a row reduction is one parallel pass, where a global maximum over `[b·s, intermediate]` was
/// the slowest kernel of a training step on the GPU (11 ms per layer).
pub fn f16_row_scale(x: &Tensor<3>) -> Tensor<3> {
    let amax = x.clone().detach().abs().max_dim(2);
    let ln2 = std::f64::consts::LN_2;
    amax.div_scalar(f64::from(F16_ROW_ROOM))
        .log()
        .div_scalar(ln2)
        .ceil()
        .clamp_min(0.0)
        .mul_scalar(ln2)
        .exp()
        .round()
}

/// Rotary position embedding `x·cos + rotate_half(x)·sin`, `rotate_half([x1, x2]) =
/// [−x2, x1]`, in `x`'s dtype.
///
/// # Shapes
/// - x: `[b, s, h, d]`, cos, sin: `[1 or b, s, 1, d]` → `[b, s, h, d]`
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone().cast(dtype) + rotated * sin.clone().cast(dtype)
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

/// One AdamW step's settings (PyTorch `torch.optim.AdamW` semantics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamwStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// The step number `t` (from 1), for the bias corrections `1 − β^t`.
    pub step: u64,
}

/// One AdamW step of one tensor in Burn's ops, the gradient first multiplied by `factor`
/// (unscale × clip, on the device): decoupled weight decay `p ← p·(1 − lr·wd)`, bias-corrected
/// moments (`None`: the first step). Returns the new parameter and moments.
///
/// # Shapes
/// - param, grad, m, v: `[r, c]`, factor: `[1]` → three of `[r, c]`
pub fn adamw(
    param: Tensor<2>,
    grad: Tensor<2>,
    moments: Option<(Tensor<2>, Tensor<2>)>,
    factor: &Tensor<1>,
    s: &AdamwStep,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let g = grad * factor.clone().reshape([1, 1]);
    let (b1, b2) = (s.beta1, s.beta2);
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
            v.mul_scalar(b2) + g.square().mul_scalar(1.0 - b2),
        ),
        None => (g.clone().mul_scalar(1.0 - b1), g.square().mul_scalar(1.0 - b2)),
    };
    let t = i32::try_from(s.step).unwrap_or(i32::MAX);
    let m_hat = m.clone().div_scalar(1.0 - b1.powi(t));
    let v_hat = v.clone().div_scalar(1.0 - b2.powi(t));
    let decayed =
        if s.weight_decay > 0.0 { param.mul_scalar(1.0 - s.lr * s.weight_decay) } else { param };
    let new = decayed - m_hat.div(v_hat.sqrt().add_scalar(s.eps)).mul_scalar(s.lr);
    (new, m, v)
}

/// `Σ t²` of each tensor in Burn's ops (f32 sums), left on the device: `[n, 1]` (`None` for no
/// tensors).
pub fn square_sums(tensors: &[&Tensor<2>]) -> Option<Tensor<2>> {
    let sums: Vec<Tensor<2>> =
        tensors.iter().map(|t| (*t).clone().cast(DType::F32).square().sum().unsqueeze()).collect();
    (!sums.is_empty()).then(|| Tensor::cat(sums, 0))
}

/// The LM loss of each row of raw head logits in Burn's ops: cast to f32, the final softcap
/// `cap·tanh(x/cap)` when given, `−log_softmax` gathered at the label.
///
/// # Shapes
/// - raw: `[n, V]`, labels: `[n]` → `[n]`
pub fn softcap_cross_entropy(
    raw: Tensor<2>,
    labels: Tensor<1, Int>,
    cap: Option<f64>,
) -> Tensor<1> {
    let logits = raw.cast(DType::F32);
    let logits = match cap {
        Some(c) => logits.div_scalar(c).tanh().mul_scalar(c),
        None => logits,
    };
    let n = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([n, 1])).reshape([n]).neg()
}

/// [`softcap_cross_entropy`] and its gradient with respect to `raw` for the losses' gradient
/// `dloss`, in f32 without a tape: `dloss·(softmax(z) − onehot(label))·(1 − tanh²(raw/cap))`,
/// returned in `raw`'s dtype as `split` column blocks.
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
    let ([n, v], dtype) = (raw.dims(), raw.dtype());
    let x = raw.cast(DType::F32);
    let (z, slope) = match cap {
        Some(c) => {
            let t = x.div_scalar(c).tanh();
            (t.clone().mul_scalar(c), t.square().neg().add_scalar(1.0))
        }
        None => (x.clone(), x.ones_like()),
    };
    let logp = log_softmax(z, 1);
    let picked = labels.reshape([n, 1]);
    let loss = logp.clone().gather(1, picked.clone()).reshape([n]).neg();
    let onehot = logp.zeros_like().scatter(
        1,
        picked,
        Tensor::ones([n, 1], (&loss.device(), DType::F32)),
        IndexingUpdateOp::Add,
    );
    let draw = (logp.exp() - onehot) * slope * dloss.cast(DType::F32).reshape([n, 1]);
    let blocks = draw.cast(dtype).reshape([n, split, v / split]).swap_dims(0, 1);
    (loss, blocks)
}

/// Which keys each query of [`flash_attention`] sees (gemma4-model's `MaskSpec::masked`):
/// query `i` is at absolute position `offset + i`, key `j` at `key_start + j`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionRule {
    pub offset: usize,
    pub key_start: usize,
    /// Keys after the query are hidden; `false`: bidirectional.
    pub causal: bool,
    /// Causal: keys with `q − k ≥ w` hidden; bidirectional: `|q − k| > w` hidden.
    pub window: Option<usize>,
    /// Multiplies `q·kᵀ`.
    pub scale: f64,
}

/// Per-token restrictions of [`flash_attention`], `[b, t]` integers over the keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenMasks<'a> {
    /// Key validity: 0 = right padding, hidden from every query.
    pub valid: Option<&'a Tensor<2, Int>>,
    /// Packed-sample ids: query `i` (key `offset − key_start + i`) sees only keys of its own
    /// segment. Only for queries among the keys (no cache): `offset ≥ key_start`, `s` fits.
    pub segments: Option<&'a Tensor<2, Int>>,
}

/// The boolean mask of `rule` and `masks` (true = hidden), as gemma4-model's `build_mask`.
///
/// # Shapes
/// - returns `[b or 1, 1, s, t]`
pub fn attention_mask(
    rule: &AttentionRule,
    masks: TokenMasks,
    s: usize,
    t: usize,
    device: &burn::tensor::Device,
) -> Tensor<4, Bool> {
    let (o, ks) = (rule.offset as i64, rule.key_start as i64);
    let q = Tensor::<1, Int>::arange(o..o + s as i64, device).reshape([1, 1, s, 1]);
    let k = Tensor::<1, Int>::arange(ks..ks + t as i64, device).reshape([1, 1, 1, t]);
    let gap = q.expand([1, 1, s, t]) - k.expand([1, 1, s, t]); // q − k
    let mut mask = match (rule.causal, rule.window) {
        (true, None) => gap.lower_elem(0),
        (true, Some(w)) => gap.clone().lower_elem(0).bool_or(gap.greater_equal_elem(w as i64)),
        (false, Some(w)) => gap.abs().greater_elem(w as i64),
        (false, None) => Tensor::<4, Bool>::zeros([1, 1, s, t], device),
    };
    if let Some(valid) = masks.valid {
        let b = valid.dims()[0];
        mask = mask.bool_or(valid.clone().equal_elem(0).reshape([b, 1, 1, t]));
    }
    if let Some(seg) = masks.segments {
        let b = seg.dims()[0];
        let shift = rule.offset - rule.key_start;
        let q_seg = seg.clone().narrow(1, shift, s).reshape([b, 1, s, 1]);
        mask = mask.bool_or(q_seg.not_equal(seg.clone().reshape([b, 1, 1, t])));
    }
    mask
}

/// Attention `softmax(q·kᵀ·scale + mask)·v` in Burn's ops: the mask of `rule` and `masks` as
/// an additive −1e30 bias, grouped KV heads folded into the query rows, [`masked_softmax`] in
/// f32, the result in q's dtype. A query that sees no key gives zeros (as the kernel does).
///
/// # Shapes
/// - q: `[b, h, s, d]`, k, v: `[b, kv, t, d]`, masks: `[b, t]` → `[b, h, s, d]`
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    rule: &AttentionRule,
    masks: TokenMasks,
) -> Tensor<4> {
    let [b, h, s, d] = q.dims();
    let [_, kv, t, _] = k.dims();
    let g = h / kv;
    let mask = attention_mask(rule, masks, s, t, &q.device());
    let bias = Tensor::<4>::zeros(mask.shape(), (&q.device(), DType::F32))
        .mask_fill(mask.clone(), -1.0e30f32);
    let q = q.reshape([b, kv, g * s, d]); // rows (group, position)
    let scores = q.matmul(k.swap_dims(2, 3)).reshape([b, h, s, t]);
    let probs = masked_softmax(scores, bias, rule.scale).reshape([b, kv, g * s, t]);
    let o = probs.matmul(v).reshape([b, h, s, d]);
    // 1 where the query sees some key, 0 where none: `[b or 1, 1, s, 1]`.
    let seen = mask.bool_not().int().sum_dim(3).greater_elem(0).float().cast(o.dtype());
    o * seen
}
