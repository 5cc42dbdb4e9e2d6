//! The backward of [`CublasMatmul`]: `y = α·a·b (+ c)` ⇒ `da = α·dy·bᵀ`, `db = α·aᵀ·dy`
//! (`dc = dy`), each the same op on a transposed view (so it runs through cuBLAS too), rounded
//! to the forward's `compute` dtype and written in the operand's own dtype. Only a tracked
//! operand gets a gradient: a frozen weight costs one product in the backward, not two.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::{Autodiff, Backend, TensorMetadata, tensor::FloatTensor};
use burn::tensor::DType;

use super::ops::CublasMatmul;

/// The product's state for its backward.
#[derive(Clone, Debug)]
struct Saved<B: Backend> {
    /// `a` when `b` needs a gradient.
    a: Option<FloatTensor<B>>,
    /// `b` when `a` needs a gradient.
    b: Option<FloatTensor<B>>,
    compute: DType,
    /// `a`'s and `b`'s dtypes.
    dtypes: [DType; 2],
    alpha: f32,
}

impl<B: Backend> Saved<B> {
    /// Keeps what the tracked operands' gradients read.
    fn new(
        a: &FloatTensor<B>,
        b: &FloatTensor<B>,
        tracked: [bool; 2],
        compute: DType,
        alpha: f32,
    ) -> Self {
        let dtypes = [a.dtype(), b.dtype()];
        let (a, b) = (tracked[1].then(|| a.clone()), tracked[0].then(|| b.clone()));
        Self { a, b, compute, dtypes, alpha }
    }
}

/// `da = α·dy·bᵀ`, rounded to `compute`, written in `dtype`.
fn grad_a<B: CublasMatmul>(
    b: Option<FloatTensor<B>>,
    dy: FloatTensor<B>,
    s: (DType, DType, f32),
) -> FloatTensor<B> {
    let b = transposed::<B>(b.expect("b is kept when a is tracked"));
    B::cublas_matmul(dy, b, s.0, s.1, s.2)
}

/// `db = α·aᵀ·dy`, rounded to `compute`, written in `dtype`.
fn grad_b<B: CublasMatmul>(
    a: Option<FloatTensor<B>>,
    dy: FloatTensor<B>,
    s: (DType, DType, f32),
) -> FloatTensor<B> {
    let a = transposed::<B>(a.expect("a is kept when b is tracked"));
    B::cublas_matmul(a, dy, s.0, s.1, s.2)
}

#[derive(Debug)]
struct CublasMatmulBackward;

#[derive(Debug)]
struct CublasMatmulAddBackward;

/// `t` with its last two axes swapped (a view).
fn transposed<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let rank = t.shape().num_dims();
    B::float_swap_dims(t, rank - 2, rank - 1)
}

impl<B: Backend + CublasMatmul> Backward<B, 2> for CublasMatmulBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { a, b, compute, dtypes: [a_dtype, b_dtype], alpha } = ops.state;
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dy| grad_a::<B>(b, dy, (compute, a_dtype, alpha)),
            |dy| grad_b::<B>(a, dy, (compute, b_dtype, alpha)),
        );
    }
}

impl<B: Backend + CublasMatmul> Backward<B, 3> for CublasMatmulAddBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { a, b, compute, dtypes: [a_dtype, b_dtype], alpha } = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let [pa, pb, pc] = ops.parents;
        let mut register = |node: NodeId, grad| grads.register::<B>(node, grad);
        if let Some(node) = pa {
            register(node.id, grad_a::<B>(b, dy.clone(), (compute, a_dtype, alpha)));
        }
        if let Some(node) = pb {
            register(node.id, grad_b::<B>(a, dy.clone(), (compute, b_dtype, alpha)));
        }
        if let Some(node) = pc {
            register(node.id, dy);
        }
    }
}

impl<B: Backend + CublasMatmul, C: CheckpointStrategy> CublasMatmul for Autodiff<B, C> {
    fn cublas_matmul(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        compute: DType,
        out: DType,
        alpha: f32,
    ) -> FloatTensor<Self> {
        let tracked = [a.is_tracked(), b.is_tracked()];
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        match CublasMatmulBackward.prepare::<C>([a_node, b_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = Saved::new(&a, &b, tracked, compute, alpha);
                prep.finish(state, B::cublas_matmul(a, b, compute, out, alpha))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cublas_matmul(a, b, compute, out, alpha)),
        }
    }

    fn cublas_matmul_add(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        compute: DType,
        alpha: f32,
    ) -> FloatTensor<Self> {
        let tracked = [a.is_tracked(), b.is_tracked()];
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        let (c, c_node) = c.into_parts();
        let nodes = [a_node, b_node, c_node];
        match CublasMatmulAddBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = Saved::new(&a, &b, tracked, compute, alpha);
                prep.finish(state, B::cublas_matmul_add(a, b, c, compute, alpha))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cublas_matmul_add(a, b, c, compute, alpha)),
        }
    }

    fn cublas_low_rank(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        alpha: f32,
    ) -> FloatTensor<Self> {
        low_rank::<B, C>(x, w, a, b, alpha)
    }

    fn cublas_low_rank_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        alpha: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // Second-order gradients are not taken: the parts' own backward is not recorded.
        let inner = |t: FloatTensor<Self>| t.into_primitive();
        let (dx, da, db) =
            B::cublas_low_rank_backward(inner(x), inner(w), inner(a), inner(b), inner(dy), alpha);
        let outer = |t| <Self as burn::backend::AutodiffBackend>::from_inner(t);
        (outer(dx), outer(da), outer(db))
    }
}

#[derive(Debug)]
struct LowRankBackward;

impl<B: Backend + CublasMatmul> Backward<B, 4> for LowRankBackward {
    /// `x`, `w`, `a`, `b` and `alpha`.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, a, b, alpha) = ops.state;
        let dy = grads.consume::<B>(&ops.node);
        let (dx, da, db) = B::cublas_low_rank_backward(x, w, a, b, dy, alpha);
        let [px, _, pa, pb] = ops.parents;
        for (parent, grad) in [(px, dx), (pa, da), (pb, db)] {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The frozen projection with a low-rank change; `w` gets no gradient.
pub(super) fn low_rank<B: Backend + CublasMatmul, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    w: FloatTensor<Autodiff<B, C>>,
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    alpha: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let (x, x_node) = x.into_parts();
    let (w, w_node) = w.into_parts();
    let (a, a_node) = a.into_parts();
    let (b, b_node) = b.into_parts();
    let nodes = [x_node, w_node, a_node, b_node];
    match LowRankBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = (x.clone(), w.clone(), a.clone(), b.clone(), alpha);
            prep.finish(state, B::cublas_low_rank(x, w, a, b, alpha))
        }
        OpsKind::UnTracked(prep) => prep.finish(B::cublas_low_rank(x, w, a, b, alpha)),
    }
}
