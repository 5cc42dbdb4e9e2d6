//! Gradient checkpointing by decoder layer (HF's `gradient_checkpointing`): the forward pass runs
//! off the tape keeping only each layer's input (and the donors' K/V), then the layers are
//! recomputed on the tape one at a time, top down, each back-propagating the gradient of its
//! output into its input. Peak activation memory is one layer's, for one more forward pass.
//!
//! ```text
//! pass 1: h₀ → layer 0 → … → layer L−1 → h_L        (no tape; keep hᵢ and donor K/V)
//! top:    g = ∂loss/∂h_L through the final norm and the chunked loss
//! pass 2: for i = L−1 … 0: outᵢ = layer i(hᵢ) on the tape;  backward(Σ outᵢ·g [+ Σ K·g_K + Σ V·g_V])
//!         g ← ∂/∂hᵢ; LoRA gradients of layer i accumulate; KV-shared layers pass g_K, g_V to their donor
//! ```
//! The surrogate `Σ out·g` has exactly the gradients of the loss upstream of `out`, so the
//! result equals the plain backward pass (tested).

use std::collections::BTreeMap;

use burn::tensor::{DType, Tensor};
use gemma4_data::Batch;
use gemma4_lora::LoraAdapter;
use gemma4_model::Gemma4TextModel;

use crate::error::Result;
use crate::loss::target_loss_and_grad;
use crate::step::{Phases, add_gradient, token_batch};

type KeyValue = (Tensor<4>, Tensor<4>);

/// The loss scale and dropout seed of one micro-batch's pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layerwise {
    /// The gradients are those of `scale · loss_sum`.
    pub scale: f64,
    /// Dropout masks are seeded from this and the layer index (the same in both passes).
    pub seed: u64,
}

/// One micro-batch's loss sum; its LoRA gradients (of `scale · loss_sum`) are added to `acc`.
pub fn layerwise_gradients(
    model: &Gemma4TextModel,
    adapter: &LoraAdapter,
    micro: &Batch,
    pass: Layerwise,
    acc: &mut BTreeMap<String, Tensor<2>>,
    phases: &mut Phases,
) -> Result<f64> {
    let (device, Layerwise { scale, seed }) = (&model.device, pass);
    let (batch, target) = (&token_batch(micro), &micro.target[..]);
    // Pass 1 must record nothing: the adapter's tensors off the tape (detach alone keeps them
    // requiring gradients, and the whole forward would be taped and kept alive by `inputs`).
    let mut frozen = adapter.clone();
    frozen.map_tensors(|_, t| t.detach().set_require_grad(false));
    let pro = model.prologue(batch, None)?;
    phases.mark("prologue");
    let n = model.layers.len();
    let is_donor: Vec<bool> =
        (0..n).map(|i| model.layers.iter().any(|l| l.spec.kv_donor == Some(i))).collect();

    // Pass 1: off the tape.
    let (mut inputs, mut donor_kv) = (Vec::with_capacity(n), BTreeMap::<usize, KeyValue>::new());
    let mut h = pro.h0.clone();
    for (i, &donor) in is_donor.iter().enumerate() {
        device.seed(seed ^ i as u64); // the same dropout masks in both passes
        let shared = model.layers[i].spec.kv_donor.and_then(|d| donor_kv.get(&d));
        let (out, own) = model.layer_forward(i, h.clone(), &pro, shared, None, &frozen)?;
        if let (true, Some(kv)) = (donor, own) {
            donor_kv.insert(i, kv);
        }
        inputs.push(h);
        h = out;
    }

    phases.mark("forward (off the tape)");

    // The final norm and the loss.
    let top = h.detach().require_grad();
    let hidden = model.norm.forward(top.clone());
    let (loss_sum, _, g_hidden) =
        target_loss_and_grad(model, hidden.clone().detach(), &batch.ids, target, scale);
    let grads = (hidden.cast(DType::F32) * g_hidden).sum().backward();
    let mut g = grad_or_zeros(top.grad(&grads), &top);
    phases.mark("loss");

    // Pass 2: each layer on the tape, top down.
    let lora_tensors = adapter.tensors(); // keyed once, not per layer
    // ∂loss/∂K and ∂loss/∂V of each donor, summed over the KV-shared layers that read them.
    let (mut k_grads, mut v_grads) =
        (BTreeMap::<usize, Tensor<4>>::new(), BTreeMap::<usize, Tensor<4>>::new());
    for i in (0..n).rev() {
        let x = inputs.pop().unwrap_or_else(|| pro.h0.clone()).detach().require_grad();
        let donor = model.layers[i].spec.kv_donor;
        let shared = donor
            .and_then(|d| donor_kv.get(&d))
            .map(|(k, v)| (k.clone().detach().require_grad(), v.clone().detach().require_grad()));
        device.seed(seed ^ i as u64);
        let (out, own) = model.layer_forward(i, x.clone(), &pro, shared.as_ref(), None, adapter)?;
        let mut surrogate = (out.cast(DType::F32) * g).sum();
        if let (Some((k, v)), Some(gk), Some(gv)) = (own, k_grads.remove(&i), v_grads.remove(&i)) {
            surrogate =
                surrogate + (k.cast(DType::F32) * gk).sum() + (v.cast(DType::F32) * gv).sum();
        }
        let grads = surrogate.backward();
        if let (Some(d), Some((k, v))) = (donor, &shared) {
            add_gradient(&mut k_grads, d, grad_or_zeros(k.grad(&grads), k));
            add_gradient(&mut v_grads, d, grad_or_zeros(v.grad(&grads), v));
        }
        for (key, t) in &lora_tensors {
            if let Some(gt) = t.grad(&grads) {
                add_gradient(acc, key.clone(), gt);
            }
        }
        g = grad_or_zeros(x.grad(&grads), &x);
    }
    phases.mark("recompute + backward");
    Ok(loss_sum)
}

/// A gradient in f32, or zeros of `like`'s shape when nothing reached it.
fn grad_or_zeros<const D: usize>(g: Option<Tensor<D>>, like: &Tensor<D>) -> Tensor<D> {
    match g {
        Some(g) => g.cast(DType::F32).detach(),
        None => Tensor::zeros(like.shape(), (&like.device(), DType::F32)),
    }
}
