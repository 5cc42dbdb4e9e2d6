//! The backward of the product ops of [`Fused`]: the tensor-core matmul's (`da = dc·bᵀ`,
//! `db = aᵀ·dc`, the same op) and a projection's output with LoRA's change added, whose
//! factors' gradients are tall products summed over the rows (`tall.rs`) instead of matmuls
//! over transposed copies.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use super::ops::Fused;

/// A matrix transposed (a view).
fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    B::float_swap_dims(t, 0, 1)
}

#[derive(Debug)]
struct MatmulBackward;

impl<B: Backend + Fused> Backward<B, 2> for MatmulBackward {
    /// `a` where `b` is tracked, `b` where `a` is.
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b) = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dc| B::fused_matmul(dc, transposed::<B>(b.expect("b is kept when a is tracked"))),
            |dc| B::fused_matmul(transposed::<B>(a.expect("a is kept when b is tracked")), dc),
        );
    }
}

/// [`Fused::fused_matmul`] under autodiff.
pub fn matmul<B: Backend + Fused, C: CheckpointStrategy>(
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let tracked = [a.is_tracked(), b.is_tracked()];
    let ((a, a_node), (b, b_node)) = (a.into_parts(), b.into_parts());
    match MatmulBackward.prepare::<C>([a_node, b_node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let kept = (tracked[1].then(|| a.clone()), tracked[0].then(|| b.clone()));
            prep.finish(kept, B::fused_matmul(a, b))
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_matmul(a, b)),
    }
}

#[derive(Debug)]
struct LowRankBackward;

impl<B: Backend + Fused> Backward<B, 4> for LowRankBackward {
    /// `x`, `x·aᵀ`, `a`, `b` and the scale.
    type State = ([FloatTensor<B>; 4], f32);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([x, xa, a, b], scale) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [x_node, a_node, b_node, base_node] = ops.parents;
        // `dxa = s·dy·b`: the change's gradient at the rank (`dy` read in its dtype).
        let dxa = B::fused_thin_product(dy.clone(), transposed::<B>(b), scale);
        if let Some(node) = b_node {
            grads.register::<B>(node.id, B::fused_tall_product(dy.clone(), xa, true, scale));
        }
        if let Some(node) = base_node {
            grads.register::<B>(node.id, dy);
        }
        if let Some(node) = x_node {
            // `dx = dxa·a`, written in `x`'s dtype (`x` is bound, not read).
            let dx = B::fused_rank_update(x.clone(), dxa.clone(), transposed::<B>(a), 1.0, false);
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = a_node {
            grads.register::<B>(node.id, B::fused_tall_product(x, dxa, false, 1.0)); // dxaᵀ·x
        }
    }
}

/// [`Fused::fused_low_rank_add`] under autodiff.
pub fn low_rank_add<B: Backend + Fused, C: CheckpointStrategy>(
    [x, a, b, base]: [FloatTensor<Autodiff<B, C>>; 4],
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let ((x, x_node), (a, a_node)) = (x.into_parts(), a.into_parts());
    let ((b, b_node), (base, base_node)) = (b.into_parts(), base.into_parts());
    let nodes = [x_node, a_node, b_node, base_node];
    match LowRankBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            // `x·aᵀ` (`[n, r]`, f32) is kept for `db`; `x` as it came (no f32 copy).
            let xa = B::fused_thin_product(x.clone(), a.clone(), 1.0);
            let y = B::fused_rank_update(base, xa.clone(), b.clone(), scale, true);
            prep.finish(([x, xa, a, b], scale), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_low_rank_add(x, a, b, base, scale)),
    }
}
