//! The parts of an optimizer step ([`crate::trainer::Trainer::step`] decides it): forward/backward
//! over the step's micro-batches with gradients summed per adapter tensor, and AdamW on the
//! adapter only.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::{DType, Device, Tensor};
use gemma4_data::Batch;
use gemma4_lora::LoraAdapter;
use gemma4_model::{Gemma4TextModel, PleRows, TokenBatch};

use crate::error::{Result, TrainError};
use crate::loss::target_loss_and_grad;
use crate::optim::AdamW;
use crate::recipe::OptimSection;
use crate::recompute::{Layerwise, layerwise_gradients};

/// Optional per-phase wall times of a step (`bench --profile`): each mark waits for the device,
/// so it perturbs what it measures a little; off (no syncs) in training.
#[derive(Debug, Default)]
pub struct Phases {
    device: Option<Device>,
    last: Option<Instant>,
    /// `(phase, seconds)` in order.
    pub times: Vec<(&'static str, f64)>,
}

impl Phases {
    pub fn off() -> Self {
        Self::default()
    }

    pub fn on(device: &Device) -> Self {
        let _ = device.sync();
        Self { device: Some(device.clone()), last: Some(Instant::now()), times: Vec::new() }
    }

    /// End the phase `name` (after the device has finished it).
    pub fn mark(&mut self, name: &'static str) {
        if let (Some(device), Some(last)) = (&self.device, self.last) {
            let _ = device.sync();
            let now = Instant::now();
            self.times.push((name, (now - last).as_secs_f64()));
            self.last = Some(now);
        }
    }
}

/// Convert a data batch into the model's input.
pub fn token_batch(b: &Batch) -> TokenBatch {
    let rows = |v: &Vec<u32>| v.chunks(b.seq).map(|c| c.to_vec()).collect::<Vec<_>>();
    TokenBatch {
        ids: b.ids.clone(),
        batch: b.batch,
        seq: b.seq,
        attention_mask: Some(b.attention_mask.chunks(b.seq).map(|c| c.to_vec()).collect()),
        segments: b.segments.as_ref().map(rows),
        positions: b.positions.as_ref().map(rows),
        ple_rows: None,
    }
}

/// What [`accumulate_gradients`] needs besides the model, adapter and batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accumulate {
    /// The target tokens of the whole step (the loss is normalised by them).
    pub tokens: usize,
    /// Dropout masks are seeded from this and the micro-batch index.
    pub seed: u64,
    /// Recompute the first this many layers in the backward pass ([`crate::recompute`]; 0:
    /// none); the gradients are the same.
    pub recompute_layers: usize,
    /// The loss is multiplied by this ([`crate::optim::LossScale`]; 1 = none).
    pub loss_scale: f64,
}

/// PLE rows uploaded ahead ([`Gemma4TextModel::upload_ple_rows`]): those of the micro-batch
/// to come, and the batch after the step's last one (if known).
pub struct Ahead<'a> {
    pub rows: &'a mut Option<PleRows>,
    pub next: Option<&'a Batch>,
}

/// Forward and backward over `micro` on the model's device, as `pass` says, using the rows
/// uploaded `ahead` and uploading the next micro-batch's once each backward pass is queued.
/// Returns the summed loss (`[1]` on the device, not normalised, not scaled: nothing is read
/// back here) and the summed gradients by key.
pub fn accumulate_gradients(
    model: &Gemma4TextModel,
    adapter: &mut LoraAdapter,
    micro: &[Batch],
    (pass, ahead): (&Accumulate, Ahead),
    phases: &mut Phases,
) -> Result<(Tensor<1>, BTreeMap<String, Tensor<2>>)> {
    let device = &model.device;
    let Accumulate { tokens, seed, recompute_layers, loss_scale } = *pass;
    adapter.training = true;
    let scale = loss_scale / tokens.max(1) as f64;
    let mut grads: BTreeMap<String, Tensor<2>> = BTreeMap::new();
    let mut loss_sum = Tensor::<1>::zeros([1], (device, DType::F32));
    for (j, mb) in micro.iter().enumerate() {
        let seed = seed ^ j as u64;
        let batch = TokenBatch { ple_rows: ahead.rows.take(), ..token_batch(mb) };
        let upcoming = micro.get(j + 1).or(ahead.next);
        if recompute_layers > 0 {
            let pass = Layerwise { scale, seed: seed << 8, layers: recompute_layers };
            let data = (&batch, &mb.target[..]);
            let sum = layerwise_gradients(model, adapter, data, pass, &mut grads, phases)?;
            loss_sum = loss_sum + sum;
            *ahead.rows = upload_ahead(model, upcoming)?;
            continue;
        }
        device.seed(seed);
        let hidden = model.forward_hidden(&batch, adapter, false)?.hidden;
        phases.mark("forward");
        // The loss and its gradient chunk by chunk, then one backward pass through the model.
        let (sum, _, g) =
            target_loss_and_grad(model, hidden.clone().detach(), &mb.ids, &mb.target, scale);
        phases.mark("loss");
        let g = (hidden.cast(DType::F32) * g).sum().backward();
        *ahead.rows = upload_ahead(model, upcoming)?;
        loss_sum = loss_sum + sum;
        for (key, t) in adapter.tensors() {
            let gk = t.grad(&g).ok_or_else(|| TrainError::Run(format!("no gradient for {key}")))?;
            add_gradient(&mut grads, key, gk);
        }
        phases.mark("backward");
    }
    adapter.training = false;
    Ok((loss_sum, grads))
}

/// The PLE rows of `batch` (if any) uploaded now, while the device runs what is queued.
fn upload_ahead(model: &Gemma4TextModel, batch: Option<&Batch>) -> Result<Option<PleRows>> {
    match batch {
        Some(b) => Ok(model.upload_ple_rows(&token_batch(b))?),
        None => Ok(None),
    }
}

/// Add `g` to the gradient accumulated under `key`.
pub fn add_gradient<K: Ord, const D: usize>(
    acc: &mut BTreeMap<K, Tensor<D>>,
    key: K,
    g: Tensor<D>,
) {
    let sum = match acc.remove(&key) {
        Some(a) => a + g,
        None => g,
    };
    acc.insert(key, sum);
}

/// AdamW on every adapter tensor that has a gradient (scaled by the clip `factor`, `[1]` on the
/// device), all in one call (a few tensors per kernel on a GPU).
pub fn apply_update(
    adapter: &mut LoraAdapter,
    opt: &mut AdamW,
    cfg: &OptimSection,
    lr: f64,
    mut grads: BTreeMap<String, Tensor<2>>,
    factor: &Tensor<1>,
) {
    opt.step += 1;
    let items: Vec<(String, Tensor<2>, Tensor<2>)> = adapter
        .tensors()
        .into_iter()
        .filter_map(|(key, p)| grads.remove(&key).map(|g| (key, p.without_autodiff(), g)))
        .collect();
    let keys: Vec<String> = items.iter().map(|(key, ..)| key.clone()).collect();
    let mut updated: BTreeMap<String, Tensor<2>> =
        keys.into_iter().zip(opt.update_all(cfg, lr, items, factor)).collect();
    adapter.map_tensors(|key, p| match updated.remove(key) {
        Some(new) => new.autodiff().require_grad(),
        None => p,
    });
}
