//! [`Fused`] on the CubeCL runtimes: each op is the project's own kernel.

use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use super::ops::{AdamwScalars, FlashRule, Fused};
use super::{
    adamw, cross_entropy, flash_attention, flash_backward, geglu, matmul_tc, rank_update, rms_norm,
    rope, softmax, square_sum, tall, thin,
};

impl Fused for CubeBackend {
    fn fused_matmul(a: CubeTensor, b: CubeTensor) -> CubeTensor {
        matmul_tc::forward(a, b)
    }

    fn fused_low_rank_add(
        x: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        base: CubeTensor,
        scale: f32,
    ) -> CubeTensor {
        rank_update::forward(base, true, thin::product(x, a, 1.0), b, scale)
    }

    fn fused_thin_product(x: CubeTensor, w: CubeTensor, scale: f32) -> CubeTensor {
        thin::product(x, w, scale)
    }

    fn fused_rank_update(
        base: CubeTensor,
        xa: CubeTensor,
        b: CubeTensor,
        scale: f32,
        has_base: bool,
    ) -> CubeTensor {
        rank_update::forward(base, has_base, xa, b, scale)
    }

    fn fused_tall_product(
        wide: CubeTensor,
        narrow: CubeTensor,
        wide_rows: bool,
        scale: f32,
    ) -> CubeTensor {
        tall::product(wide, narrow, wide_rows, scale)
    }

    fn fused_rms_norm(x: CubeTensor, weight: CubeTensor, scaled: bool, eps: f32) -> CubeTensor {
        rms_norm::forward(x, scaled.then_some(weight), eps)
    }

    fn fused_rms_norm_backward(
        x: CubeTensor,
        weight: CubeTensor,
        scaled: bool,
        dy: CubeTensor,
        eps: f32,
    ) -> CubeTensor {
        rms_norm::backward(x, scaled.then_some(weight), dy, eps)
    }

    fn fused_geglu(gate: CubeTensor, up: CubeTensor) -> CubeTensor {
        geglu::forward(gate, up)
    }

    fn fused_geglu_backward(
        gate: CubeTensor,
        up: CubeTensor,
        dh: CubeTensor,
    ) -> (CubeTensor, CubeTensor) {
        geglu::backward(gate, up, dh, None)
    }

    fn fused_geglu_scaled(gate: CubeTensor, up: CubeTensor) -> (CubeTensor, CubeTensor) {
        geglu::forward_scaled(gate, up)
    }

    fn fused_geglu_scaled_backward(
        gate: CubeTensor,
        up: CubeTensor,
        scale: CubeTensor,
        dh: CubeTensor,
    ) -> (CubeTensor, CubeTensor) {
        geglu::backward(gate, up, dh, Some(scale))
    }

    fn fused_softmax(scores: CubeTensor, bias: CubeTensor, scale: f32) -> CubeTensor {
        softmax::forward(scores, bias, scale)
    }

    fn fused_softmax_backward(probs: CubeTensor, dprobs: CubeTensor, scale: f32) -> CubeTensor {
        softmax::backward(probs, dprobs, scale)
    }

    fn fused_adamw(
        param: CubeTensor,
        grad: CubeTensor,
        m: CubeTensor,
        v: CubeTensor,
        scalars: AdamwScalars,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        adamw::step([param, grad, m, v], scalars)
    }

    fn fused_square_sum(t: CubeTensor, out: CubeTensor, slot: u32) -> CubeTensor {
        square_sum::into_slot(t, out, slot)
    }

    fn fused_cross_entropy(
        raw: CubeTensor,
        labels: CubeTensor,
        cap: f32,
        has_cap: bool,
    ) -> (CubeTensor, CubeTensor) {
        cross_entropy::forward(raw, labels, has_cap.then_some(cap))
    }

    fn fused_cross_entropy_backward(
        raw: CubeTensor,
        labels: CubeTensor,
        lse: CubeTensor,
        dloss: CubeTensor,
        cap: f32,
        has_cap: bool,
    ) -> CubeTensor {
        cross_entropy::backward([raw, labels, lse, dloss], has_cap.then_some(cap))
    }

    fn fused_rope(x: CubeTensor, cos: CubeTensor, sin: CubeTensor) -> CubeTensor {
        rope::launch(x, cos, sin, false)
    }

    fn fused_rope_backward(dy: CubeTensor, cos: CubeTensor, sin: CubeTensor) -> CubeTensor {
        rope::launch(dy, cos, sin, true)
    }

    fn fused_flash_attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        valid: CubeTensor,
        segments: CubeTensor,
        rule: FlashRule,
    ) -> (CubeTensor, CubeTensor) {
        flash_attention::forward([q, k, v, valid, segments], &rule)
    }

    fn fused_flash_attention_backward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        o: CubeTensor,
        lse: CubeTensor,
        dout: CubeTensor,
        valid: CubeTensor,
        segments: CubeTensor,
        rule: FlashRule,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        flash_backward::backward([q, k, v, o, lse, dout], [valid, segments], &rule)
    }
}
