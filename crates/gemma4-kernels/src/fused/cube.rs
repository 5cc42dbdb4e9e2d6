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

    #[allow(clippy::type_complexity)]
    fn fused_adamw(
        p0: CubeTensor,
        g0: CubeTensor,
        m0: CubeTensor,
        v0: CubeTensor,
        p1: CubeTensor,
        g1: CubeTensor,
        m1: CubeTensor,
        v1: CubeTensor,
        p2: CubeTensor,
        g2: CubeTensor,
        m2: CubeTensor,
        v2: CubeTensor,
        p3: CubeTensor,
        g3: CubeTensor,
        m3: CubeTensor,
        v3: CubeTensor,
        factor: CubeTensor,
        count: u32,
        scalars: AdamwScalars,
    ) -> (
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
        CubeTensor,
    ) {
        let given: Vec<[CubeTensor; 3]> = vec![
            [p0.clone(), m0.clone(), v0.clone()],
            [p1.clone(), m1.clone(), v1.clone()],
            [p2.clone(), m2.clone(), v2.clone()],
            [p3.clone(), m3.clone(), v3.clone()],
        ];
        let mut items =
            vec![[p0, g0, m0, v0], [p1, g1, m1, v1], [p2, g2, m2, v2], [p3, g3, m3, v3]];
        items.truncate(count as usize);
        let mut o = adamw::step(items, factor, scalars);
        o.extend(given.into_iter().skip(o.len()));
        (
            o[0][0].clone(),
            o[0][1].clone(),
            o[0][2].clone(),
            o[1][0].clone(),
            o[1][1].clone(),
            o[1][2].clone(),
            o[2][0].clone(),
            o[2][1].clone(),
            o[2][2].clone(),
            o[3][0].clone(),
            o[3][1].clone(),
            o[3][2].clone(),
        )
    }

    fn fused_square_sums(
        t0: CubeTensor,
        t1: CubeTensor,
        t2: CubeTensor,
        t3: CubeTensor,
        t4: CubeTensor,
        t5: CubeTensor,
        t6: CubeTensor,
        t7: CubeTensor,
        out: CubeTensor,
        first: u32,
        count: u32,
    ) -> CubeTensor {
        let mut tensors = vec![t0, t1, t2, t3, t4, t5, t6, t7];
        tensors.truncate(count as usize);
        square_sum::square_sums(tensors, out, first)
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
        split: usize,
    ) -> CubeTensor {
        cross_entropy::backward([raw, labels, lse, dloss], has_cap.then_some(cap), split)
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
