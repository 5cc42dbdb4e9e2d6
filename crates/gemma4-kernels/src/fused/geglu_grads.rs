//! GeGLU's backward under autodiff, plain and row-scaled (`geglu.rs`): the forward keeps gate
//! and up as they are (and the row scales); one kernel writes both gradients.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use super::ops::Fused;

#[derive(Debug)]
struct GegluBackward;

impl<B: Backend + Fused> Backward<B, 2> for GegluBackward {
    /// gate and up, and the row scales of the scaled op.
    type State = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up, scale) = ops.state;
        let dh = grads.consume::<B>(&ops.node);
        let (dgate, dup) = match scale {
            None => B::fused_geglu_backward(gate, up, dh),
            Some(scale) => B::fused_geglu_scaled_backward(gate, up, scale, dh),
        };
        // Each gradient goes to its input where that is tracked.
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<B>(node.id, dgate);
        }
        if let Some(node) = up_node {
            grads.register::<B>(node.id, dup);
        }
    }
}

/// A tensor of the autodiff backend.
type Tracked<B, C> = FloatTensor<Autodiff<B, C>>;

/// [`Fused::fused_geglu`] under autodiff.
pub fn geglu<B: Backend + Fused, C: CheckpointStrategy>(
    gate: Tracked<B, C>,
    up: Tracked<B, C>,
) -> Tracked<B, C> {
    let (gate, gate_node) = gate.into_parts();
    let (up, up_node) = up.into_parts();
    match GegluBackward.prepare::<C>([gate_node, up_node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let h = B::fused_geglu(gate.clone(), up.clone());
            prep.finish((gate, up, None), h)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::fused_geglu(gate, up)),
    }
}

/// [`Fused::fused_geglu_scaled`] under autodiff: the scaled activation (tracked) and the row
/// scales (constants: each row of `down(h)·s` is `down(h·s)`'s for any `s`).
pub fn geglu_scaled<B: Backend + Fused, C: CheckpointStrategy>(
    gate: Tracked<B, C>,
    up: Tracked<B, C>,
) -> (Tracked<B, C>, Tracked<B, C>) {
    let (gate, gate_node) = gate.into_parts();
    let (up, up_node) = up.into_parts();
    match GegluBackward.prepare::<C>([gate_node, up_node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (h, scale) = B::fused_geglu_scaled(gate.clone(), up.clone());
            let h = prep.finish((gate, up, Some(scale.clone())), h);
            (h, Tracked::<B, C>::new(scale))
        }
        OpsKind::UnTracked(prep) => {
            let (h, scale) = B::fused_geglu_scaled(gate, up);
            (prep.finish(h), Tracked::<B, C>::new(scale))
        }
    }
}
