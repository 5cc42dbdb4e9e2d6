//! The backward of [`CublasMatmul`]: `c = a·b` ⇒ `da = dc·bᵀ`, `db = aᵀ·dc`, each the same op on
//! a transposed view (so it runs through cuBLAS too), rounded to the forward's `compute` dtype
//! and written in the operand's own dtype. Only a tracked operand gets a gradient: a frozen
//! weight costs one product in the backward, not two.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::{Autodiff, Backend, TensorMetadata, tensor::FloatTensor};
use burn::tensor::DType;

use super::ops::CublasMatmul;

#[derive(Debug)]
struct CublasMatmulBackward;

/// `t` with its last two axes swapped (a view).
fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let rank = t.shape().num_dims();
    B::float_swap_dims(t, rank - 2, rank - 1)
}

impl<B: Backend + CublasMatmul> Backward<B, 2> for CublasMatmulBackward {
    /// `a` when `b` needs a gradient, `b` when `a` does; the compute dtype; `a`'s and `b`'s
    /// dtypes.
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>, DType, [DType; 2]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b, compute, [a_dtype, b_dtype]) = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dc| {
                let b = transposed::<B>(b.expect("b is kept when a is tracked"));
                B::cublas_matmul(dc, b, compute, a_dtype)
            },
            |dc| {
                let a = transposed::<B>(a.expect("a is kept when b is tracked"));
                B::cublas_matmul(a, dc, compute, b_dtype)
            },
        );
    }
}

impl<B: Backend + CublasMatmul, C: CheckpointStrategy> CublasMatmul for Autodiff<B, C> {
    fn cublas_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        compute: DType,
        out: DType,
    ) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        match CublasMatmulBackward.prepare::<C>([a_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let dtypes = [a.dtype(), b.dtype()];
                let kept = (b_tracked.then(|| a.clone()), a_tracked.then(|| b.clone()));
                let state = (kept.0, kept.1, compute, dtypes);
                prep.finish(state, B::cublas_matmul(a, b, compute, out))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cublas_matmul(a, b, compute, out)),
        }
    }
}
