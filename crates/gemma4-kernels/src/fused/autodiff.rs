//! The backward of each [`Fused`] op, as its own kernel. Scales and other weights the ops take
//! are constants: the wrapper in `super` sends an op whose weight needs a gradient to the
//! plain ops instead.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::{
    Autodiff, Backend,
    tensor::{FloatTensor, IntTensor},
};

use super::ops::{AdamwScalars, FlashRule, Fused};
use super::row_grads::{CrossEntropyBackward, RmsNormBackward, RopeBackward, SoftmaxBackward};
use super::{flash_grads, geglu_grads, product_grads};

/// The inner value of a constant (its autodiff node, if any, is not followed).
fn constant<B: Backend, C: CheckpointStrategy>(t: FloatTensor<Autodiff<B, C>>) -> FloatTensor<B> {
    t.into_parts().0
}

impl<B: Backend + Fused, C: CheckpointStrategy> Fused for Autodiff<B, C> {
    fn fused_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        product_grads::matmul::<B, C>(a, b)
    }

    fn fused_low_rank_add(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        base: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        product_grads::low_rank_add::<B, C>([x, a, b, base], scale)
    }

    /// Not differentiable: computed on the inner values, returned untracked.
    fn fused_thin_product(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::fused_thin_product(
            constant::<B, C>(x),
            constant::<B, C>(w),
            scale,
        ))
    }

    /// Not differentiable: computed on the inner values, returned untracked.
    fn fused_rank_update(
        base: FloatTensor<Self>,
        xa: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        has_base: bool,
    ) -> FloatTensor<Self> {
        let [base, xa, b] = [base, xa, b].map(constant::<B, C>);
        FloatTensor::<Self>::new(B::fused_rank_update(base, xa, b, scale, has_base))
    }

    /// Not differentiable: computed on the inner values, returned untracked.
    fn fused_tall_product(
        wide: FloatTensor<Self>,
        narrow: FloatTensor<Self>,
        wide_rows: bool,
        scale: f32,
    ) -> FloatTensor<Self> {
        let [wide, narrow] = [wide, narrow].map(constant::<B, C>);
        FloatTensor::<Self>::new(B::fused_tall_product(wide, narrow, wide_rows, scale))
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scaled: bool,
        eps: f32,
    ) -> FloatTensor<Self> {
        let weight = constant::<B, C>(weight);
        let (x, x_node) = x.into_parts();
        match RmsNormBackward.prepare::<C>([x_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rms_norm(x.clone(), weight.clone(), scaled, eps);
                prep.finish((x, weight, scaled, eps), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rms_norm(x, weight, scaled, eps)),
        }
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scaled: bool,
        dy: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let dx = B::fused_rms_norm_backward(
            constant::<B, C>(x),
            constant::<B, C>(weight),
            scaled,
            constant::<B, C>(dy),
            eps,
        );
        FloatTensor::<Self>::new(dx)
    }

    fn fused_geglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        geglu_grads::geglu::<B, C>(gate, up)
    }

    fn fused_geglu_scaled(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        geglu_grads::geglu_scaled::<B, C>(gate, up)
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_geglu_scaled_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [gate, up, scale, dh] = [gate, up, scale, dh].map(constant::<B, C>);
        let (dgate, dup) = B::fused_geglu_scaled_backward(gate, up, scale, dh);
        (FloatTensor::<Self>::new(dgate), FloatTensor::<Self>::new(dup))
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_geglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        dh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dgate, dup) = B::fused_geglu_backward(
            constant::<B, C>(gate),
            constant::<B, C>(up),
            constant::<B, C>(dh),
        );
        (FloatTensor::<Self>::new(dgate), FloatTensor::<Self>::new(dup))
    }

    fn fused_softmax(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let bias = constant::<B, C>(bias);
        let (scores, node) = scores.into_parts();
        match SoftmaxBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let probs = B::fused_softmax(scores, bias, scale);
                prep.finish((probs.clone(), scale), probs)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_softmax(scores, bias, scale)),
        }
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_softmax_backward(
        probs: FloatTensor<Self>,
        dprobs: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let dscores =
            B::fused_softmax_backward(constant::<B, C>(probs), constant::<B, C>(dprobs), scale);
        FloatTensor::<Self>::new(dscores)
    }

    /// Not differentiable: computed on the inner values, returned untracked.
    #[allow(clippy::type_complexity)]
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
    ) {
        let c = constant::<B, C>;
        let (np0, nm0, nv0, np1, nm1, nv1, np2, nm2, nv2, np3, nm3, nv3) = B::fused_adamw(
            c(p0),
            c(g0),
            c(m0),
            c(v0),
            c(p1),
            c(g1),
            c(m1),
            c(v1),
            c(p2),
            c(g2),
            c(m2),
            c(v2),
            c(p3),
            c(g3),
            c(m3),
            c(v3),
            c(factor),
            count,
            scalars,
        );
        let w = FloatTensor::<Self>::new;
        (
            w(np0),
            w(nm0),
            w(nv0),
            w(np1),
            w(nm1),
            w(nv1),
            w(np2),
            w(nm2),
            w(nv2),
            w(np3),
            w(nm3),
            w(nv3),
        )
    }

    /// Not differentiable: computed on the inner values, returned untracked.
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
    ) -> FloatTensor<Self> {
        let c = constant::<B, C>;
        let out = B::fused_square_sums(
            c(t0),
            c(t1),
            c(t2),
            c(t3),
            c(t4),
            c(t5),
            c(t6),
            c(t7),
            c(out),
            first,
            count,
        );
        FloatTensor::<Self>::new(out)
    }

    fn fused_cross_entropy(
        raw: FloatTensor<Self>,
        labels: IntTensor<Self>,
        cap: f32,
        has_cap: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (raw, node) = raw.into_parts();
        match CrossEntropyBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (loss, lse) = B::fused_cross_entropy(raw.clone(), labels.clone(), cap, has_cap);
                let state = (raw, labels, lse.clone(), cap, has_cap);
                (prep.finish(state, loss), FloatTensor::<Self>::new(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (loss, lse) = B::fused_cross_entropy(raw, labels, cap, has_cap);
                (prep.finish(loss), FloatTensor::<Self>::new(lse))
            }
        }
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_cross_entropy_backward(
        raw: FloatTensor<Self>,
        labels: IntTensor<Self>,
        lse: FloatTensor<Self>,
        dloss: FloatTensor<Self>,
        cap: f32,
        has_cap: bool,
        split: usize,
    ) -> FloatTensor<Self> {
        let draw = B::fused_cross_entropy_backward(
            constant::<B, C>(raw),
            labels,
            constant::<B, C>(lse),
            constant::<B, C>(dloss),
            cap,
            has_cap,
            split,
        );
        FloatTensor::<Self>::new(draw)
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (constant::<B, C>(cos), constant::<B, C>(sin));
        let (x, node) = x.into_parts();
        match RopeBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rope(x, cos.clone(), sin.clone());
                prep.finish((cos, sin), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rope(x, cos, sin)),
        }
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
    fn fused_rope_backward(
        dy: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let dx = B::fused_rope_backward(
            constant::<B, C>(dy),
            constant::<B, C>(cos),
            constant::<B, C>(sin),
        );
        FloatTensor::<Self>::new(dx)
    }

    fn fused_flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        valid: IntTensor<Self>,
        segments: IntTensor<Self>,
        rule: FlashRule,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        flash_grads::flash_attention::<B, C>([q, k, v], [valid, segments], rule)
    }

    /// Not differentiated again: computed on the inner values, returned untracked.
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
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [q, k, v, o, lse, dout] = [q, k, v, o, lse, dout].map(constant::<B, C>);
        let (dq, dk, dv) =
            B::fused_flash_attention_backward(q, k, v, o, lse, dout, valid, segments, rule);
        (FloatTensor::<Self>::new(dq), FloatTensor::<Self>::new(dk), FloatTensor::<Self>::new(dv))
    }
}
