//! Flash attention's backward under autodiff: the forward keeps `q`, `k`, `v`, the output and
//! its log-sum-exp; two kernels write all three gradients.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{
    Autodiff, Backend,
    tensor::{FloatTensor, IntTensor},
};

use super::ops::{FlashRule, Fused};

#[derive(Debug)]
struct FlashBackward;

/// q, k, v, the output and its log-sum-exp; the key validity and segments; the rule.
type FlashState<B> = ([FloatTensor<B>; 5], [IntTensor<B>; 2], FlashRule);

impl<B: Backend + Fused> Backward<B, 3> for FlashBackward {
    type State = FlashState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([q, k, v, o, lse], [valid, segments], rule) = ops.state;
        let dout = grads.consume::<B>(&ops.node);
        // Two kernels write all three gradients; each goes to its input where that is tracked
        // (k and v of a KV-shared layer are its donor's: their gradients reach the donor).
        let (dq, dk, dv) =
            B::fused_flash_attention_backward(q, k, v, o, lse, dout, valid, segments, rule);
        for (node, grad) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// A tensor of the autodiff backend.
type Tracked<B, C> = FloatTensor<Autodiff<B, C>>;

/// [`Fused::fused_flash_attention`] under autodiff: the output (tracked) and its log-sum-exp.
pub fn flash_attention<B: Backend + Fused, C: CheckpointStrategy>(
    [q, k, v]: [Tracked<B, C>; 3],
    [valid, segments]: [IntTensor<Autodiff<B, C>>; 2],
    rule: FlashRule,
) -> (Tracked<B, C>, Tracked<B, C>) {
    let (q, q_node) = q.into_parts();
    let (k, k_node) = k.into_parts();
    let (v, v_node) = v.into_parts();
    let prep = FlashBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful();
    match prep {
        OpsKind::Tracked(prep) => {
            let inputs = (q.clone(), k.clone(), v.clone());
            let (o, lse) = B::fused_flash_attention(
                inputs.0,
                inputs.1,
                inputs.2,
                valid.clone(),
                segments.clone(),
                rule,
            );
            let state = ([q, k, v, o.clone(), lse.clone()], [valid, segments], rule);
            (prep.finish(state, o), Tracked::<B, C>::new(lse))
        }
        OpsKind::UnTracked(prep) => {
            let (o, lse) = B::fused_flash_attention(q, k, v, valid, segments, rule);
            (prep.finish(o), Tracked::<B, C>::new(lse))
        }
    }
}
