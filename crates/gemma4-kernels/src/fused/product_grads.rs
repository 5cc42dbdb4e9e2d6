//! The backward of the product ops of [`Fused`]: the tensor-core matmul's (`da = dc·bᵀ`,
//! `db = aᵀ·dc`, the same op) and LoRA's change of a projection, whose factors' gradients are
//! tall products summed over the rows (`tall.rs`) instead of matmuls over transposed copies.

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

impl<B: Backend + Fused> Backward<B, 3> for LowRankBackward {
    /// `x`, `x·aᵀ`, `a`, `b` and the scale.
    type State = ([FloatTensor<B>; 4], f32);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([x, xa, a, b], scale) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [x_node, a_node, b_node] = ops.parents;
        // `dxa = s·dy·b`: the change's gradient at the rank.
        let dxa = B::float_matmul(dy.clone(), B::float_mul_scalar(b, scale.into()));
        if let Some(node) = b_node {
            grads.register::<B>(node.id, B::fused_tall_product(dy, xa, scale)); // s·dyᵀ·xa
        }
        if let Some(node) = a_node {
            grads.register::<B>(node.id, B::fused_tall_product(dxa.clone(), x, 1.0)); // dxaᵀ·x
        }
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::float_matmul(dxa, a));
        }
    }
}

/// [`Fused::fused_low_rank`] under autodiff.
pub fn low_rank<B: Backend + Fused, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let ((x, x_node), (a, a_node), (b, b_node)) = (x.into_parts(), a.into_parts(), b.into_parts());
    match LowRankBackward.prepare::<C>([x_node, a_node, b_node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            // `x·aᵀ` (`[n, r]`) is kept for `db`; the forward is the CubeCL op's.
            let xa = B::float_matmul(x.clone(), transposed::<B>(a.clone()));
            let bs = B::float_mul_scalar(b.clone(), scale.into());
            let y = B::float_matmul(xa.clone(), transposed::<B>(bs));
            prep.finish(([x, xa, a, b], scale), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_low_rank(x, a, b, scale)),
    }
}
