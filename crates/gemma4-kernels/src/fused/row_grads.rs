//! The backward steps of the row kernels under autodiff (RMSNorm, RoPE, the softmax, the loss):
//! each keeps what its kernel needs and runs that kernel's backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::{
    Backend,
    tensor::{FloatTensor, IntTensor},
};

use super::ops::Fused;

#[derive(Debug)]
pub(super) struct RmsNormBackward;

impl<B: Backend + Fused> Backward<B, 1> for RmsNormBackward {
    /// The input, the scale (read when `scaled`) and eps.
    type State = (FloatTensor<B>, FloatTensor<B>, bool, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, scaled, eps) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| {
            B::fused_rms_norm_backward(x, weight, scaled, dy, eps)
        });
    }
}

#[derive(Debug)]
pub(super) struct RopeBackward;

impl<B: Backend + Fused> Backward<B, 1> for RopeBackward {
    /// cos and sin.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dy| B::fused_rope_backward(dy, cos, sin));
    }
}

#[derive(Debug)]
pub(super) struct SoftmaxBackward;

impl<B: Backend + Fused> Backward<B, 1> for SoftmaxBackward {
    /// The output (the probabilities, which the next product keeps anyway) and the scale.
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (probs, scale) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dprobs| {
            B::fused_softmax_backward(probs, dprobs, scale)
        });
    }
}

#[derive(Debug)]
pub(super) struct CrossEntropyBackward;

/// The raw logits, the labels, the log-sum-exps, the cap and whether there is one.
type CrossEntropyState<B> = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>, f32, bool);

impl<B: Backend + Fused> Backward<B, 1> for CrossEntropyBackward {
    type State = CrossEntropyState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (raw, labels, lse, cap, has_cap) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |dloss| {
            B::fused_cross_entropy_backward(raw, labels, lse, dloss, cap, has_cap, 1)
        });
    }
}
