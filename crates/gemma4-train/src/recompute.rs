//! Gradient checkpointing by decoder layer (HF's `gradient_checkpointing`), for the first `k`
//! layers (all of them: `true`; a number: that many, the rest kept on the tape). The forward
//! pass runs those layers off the tape keeping only each layer's input (and the donors' K/V),
//! the layers above them on the tape; the backward pass runs from the loss through the taped
//! layers, then the recomputed ones are run again on the tape one at a time, top down, each
//! back-propagating the gradient of its output into its input. Peak activation memory is one
//! layer's plus the taped layers', for one more forward pass of the first `k`.
//!
//! ```text
//! pass 1: h₀ → layer 0 … k−1 (no tape; keep hᵢ and donor K/V) → h_k (a leaf) → layer k … L−1 (tape)
//! top:    backward of the loss through the final norm and layers k … L−1:
//!         g = ∂loss/∂h_k; their LoRA gradients; ∂loss/∂K, ∂V of donors below k
//! pass 2: for i = k−1 … 0: outᵢ = layer i(hᵢ) on the tape;  backward(Σ outᵢ·g [+ Σ K·g_K + Σ V·g_V])
//!         g ← ∂/∂hᵢ; LoRA gradients of layer i accumulate; KV-shared layers pass g_K, g_V to their donor
//! ```
//! The surrogate `Σ out·g` has exactly the gradients of the loss upstream of `out`, so the
//! result equals the plain backward pass (tested).

use std::collections::BTreeMap;

use burn::tensor::{DType, Tensor};
use gemma4_lora::LoraAdapter;
use gemma4_model::{Gemma4TextModel, Prologue, TokenBatch};

use crate::error::Result;
use crate::loss::target_loss_and_grad;
use crate::step::{Phases, add_gradient};

type KeyValue = (Tensor<4>, Tensor<4>);

/// The loss scale, dropout seed and recomputed layers of one micro-batch's pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layerwise {
    /// The gradients are those of `scale · loss_sum`.
    pub scale: f64,
    /// Dropout masks are seeded from this and the layer index (the same in both passes).
    pub seed: u64,
    /// The first `layers` decoder layers are recomputed (at most all of them).
    pub layers: usize,
}

/// What pass 1 keeps: the recomputed layers' inputs, the donors' K/V below `k` (as leaves
/// when a taped layer reads them) and the last hidden state (on the tape above `k`).
struct Kept {
    inputs: Vec<Tensor<3>>,
    donor_kv: BTreeMap<usize, KeyValue>,
    /// h_k, a leaf requiring a gradient.
    leaf: Tensor<3>,
    top: Tensor<3>,
}

/// Pass 1: layers below `k` off the tape with `frozen`, the rest on the tape with `adapter`.
fn first_pass(
    model: &Gemma4TextModel,
    pro: &Prologue,
    (frozen, adapter): (&LoraAdapter, &LoraAdapter),
    seed: u64,
    k: usize,
) -> Result<Kept> {
    let n = model.layers.len();
    let is_donor = |i: usize| model.layers.iter().any(|l| l.spec.kv_donor == Some(i));
    let (mut inputs, mut donor_kv) = (Vec::with_capacity(k), BTreeMap::<usize, KeyValue>::new());
    let (mut h, mut leaf) = (pro.h0.clone(), None);
    for i in 0..n {
        model.device.seed(seed ^ i as u64); // the same dropout masks in both passes
        if i == k {
            h = h.detach().require_grad();
            leaf = Some(h.clone());
            // Taped layers read the donors' K/V below them as leaves (gradients come back).
            for kv in donor_kv.values_mut() {
                *kv = (kv.0.clone().detach().require_grad(), kv.1.clone().detach().require_grad());
            }
        }
        let shared = model.layers[i].spec.kv_donor.and_then(|d| donor_kv.get(&d)).cloned();
        let lora = if i < k { frozen } else { adapter };
        let (out, own) = model.layer_forward(i, h.clone(), pro, shared.as_ref(), None, lora)?;
        if let (true, Some(kv)) = (is_donor(i), own) {
            donor_kv.insert(i, kv);
        }
        if i < k {
            inputs.push(h);
        }
        h = out;
    }
    let leaf = match leaf {
        Some(l) => l,
        None => {
            h = h.detach().require_grad();
            h.clone()
        }
    };
    Ok(Kept { inputs, donor_kv, leaf, top: h })
}

/// One micro-batch's loss sum (`[1]`, on the device, not read back); its LoRA gradients (of
/// `scale · loss_sum`) are added to `acc`.
pub fn layerwise_gradients(
    model: &Gemma4TextModel,
    adapter: &LoraAdapter,
    (batch, target): (&TokenBatch, &[bool]),
    pass: Layerwise,
    acc: &mut BTreeMap<String, Tensor<2>>,
    phases: &mut Phases,
) -> Result<Tensor<1>> {
    let Layerwise { scale, seed, layers } = pass;
    let k = layers.min(model.layers.len());
    // Pass 1 must record nothing below k: the adapter's tensors off the tape (detach alone
    // keeps them requiring gradients, and the whole forward would be taped and kept alive).
    let mut frozen = adapter.clone();
    frozen.map_tensors(|_, t| t.detach().set_require_grad(false));
    let pro = model.prologue(batch, None)?;
    phases.mark("prologue");
    let Kept { mut inputs, donor_kv, leaf, top } =
        first_pass(model, &pro, (&frozen, adapter), seed, k)?;
    phases.mark("forward (layers below k off the tape)");

    // The final norm, the loss, and the backward through the taped layers.
    let hidden = model.norm.forward(top);
    let (loss_sum, _, g_hidden) =
        target_loss_and_grad(model, hidden.clone().detach(), &batch.ids, target, scale);
    let grads = (hidden.cast(DType::F32) * g_hidden).sum().backward();
    let lora_tensors = adapter.tensors(); // keyed once, not per layer
    for (key, t) in &lora_tensors {
        if let Some(gt) = t.grad(&grads) {
            add_gradient(acc, key.clone(), gt);
        }
    }
    let mut g = grad_or_zeros(leaf.grad(&grads), &leaf);
    // ∂loss/∂K and ∂loss/∂V of each donor, summed over the KV-shared layers that read them.
    let (mut k_grads, mut v_grads) =
        (BTreeMap::<usize, Tensor<4>>::new(), BTreeMap::<usize, Tensor<4>>::new());
    if k < model.layers.len() {
        for (&d, (key, value)) in donor_kv.range(..k) {
            add_gradient(&mut k_grads, d, grad_or_zeros(key.grad(&grads), key));
            add_gradient(&mut v_grads, d, grad_or_zeros(value.grad(&grads), value));
        }
    }
    phases.mark("loss + backward above k");

    // Pass 2: each recomputed layer on the tape, top down.
    for i in (0..k).rev() {
        let x = inputs.pop().unwrap_or_else(|| pro.h0.clone()).detach().require_grad();
        let donor = model.layers[i].spec.kv_donor;
        let shared = donor
            .and_then(|d| donor_kv.get(&d))
            .map(|(k, v)| (k.clone().detach().require_grad(), v.clone().detach().require_grad()));
        model.device.seed(seed ^ i as u64);
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
