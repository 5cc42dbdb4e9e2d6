//! The backward of [`CublasMatmul`]: `c = a·b` ⇒ `da = dc·bᵀ`, `db = aᵀ·dc`, each the same op on
//! a transposed view (so it runs through cuBLAS too). Only a tracked operand gets a gradient:
//! a frozen weight costs one product in the backward, not two.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::{Autodiff, Backend, TensorMetadata, tensor::FloatTensor};

use super::ops::CublasMatmul;

#[derive(Debug)]
struct CublasMatmulBackward;

/// `t` with its last two axes swapped (a view).
fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let rank = t.shape().num_dims();
    B::float_swap_dims(t, rank - 2, rank - 1)
}

impl<B: Backend + CublasMatmul> Backward<B, 2> for CublasMatmulBackward {
    /// `a` when `b` needs a gradient, `b` when `a` does.
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b) = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dc| B::cublas_matmul(dc, transposed::<B>(b.expect("b is kept when a is tracked"))),
            |dc| B::cublas_matmul(transposed::<B>(a.expect("a is kept when b is tracked")), dc),
        );
    }
}

impl<B: Backend + CublasMatmul, C: CheckpointStrategy> CublasMatmul for Autodiff<B, C> {
    fn cublas_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        match CublasMatmulBackward.prepare::<C>([a_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = (b_tracked.then(|| a.clone()), a_tracked.then(|| b.clone()));
                prep.finish(state, B::cublas_matmul(a, b))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cublas_matmul(a, b)),
        }
    }
}
