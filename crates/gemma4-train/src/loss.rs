//! Next-token cross-entropy in f32, with the model's final softcap, computed only at trained
//! positions and in chunks of rows: the `[b, s, 262144]` logits of a real vocabulary never exist
//! at once.

use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData};
use gemma4_kernels::fused::{softcap_cross_entropy, softcap_cross_entropy_grad};
use gemma4_model::Gemma4TextModel;

/// Rows of hidden states per logits chunk (fewer when a chunk's f32 logits would exceed the
/// device's largest buffer, see [`chunk_rows`]).
pub const CHUNK_ROWS: usize = 1024;

/// Rows per logits chunk for a vocabulary of `vocab`: [`CHUNK_ROWS`], or as many as fit in
/// `piece_bytes` as f32 (the model's piece limit, [`Gemma4TextModel::piece_bytes`]: the
/// device's largest buffer, 128 MiB on lavapipe, or 1 GiB).
pub fn chunk_rows(vocab: usize, piece_bytes: usize) -> usize {
    CHUNK_ROWS.min(piece_bytes / (4 * vocab.max(1))).max(1)
}

/// Sum of the cross-entropy over target tokens, and how many there are.
///
/// `target[r·s + t]` marks token `t` of row `r` as trained: it is predicted from the hidden
/// state at `t − 1`.
///
/// # Shapes
/// - hidden: `[b, s, e]` (after the final norm), ids/target: `b·s` → `[1]` (f32)
pub fn target_loss_sum(
    model: &Gemma4TextModel,
    hidden: Tensor<3>,
    ids: &[u32],
    target: &[bool],
) -> (Tensor<1>, usize) {
    let [b, s, e] = hidden.dims();
    let device = hidden.device();
    let (rows, labels) = target_rows(b, s, ids, target);
    let count = rows.len();
    let flat = hidden.reshape([b * s, e]);
    let mut total = Tensor::<1>::zeros([1], (&device, DType::F32));
    let rows_per_chunk = chunk_rows(model.config.vocab_size, model.piece_bytes());
    for start in (0..count).step_by(rows_per_chunk) {
        let n = rows_per_chunk.min(count - start);
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(rows[start..start + n].to_vec(), [n]),
            &device,
        );
        let lab = Tensor::<1, Int>::from_data(
            TensorData::new(labels[start..start + n].to_vec(), [n]),
            &device,
        );
        let h = flat.clone().select(0, idx).reshape([1, n, e]);
        total = total + chunk_losses(model, h, lab).sum().reshape([1]);
    }
    (total, count)
}

/// As [`target_loss_sum`], with its gradient, chunk by chunk and without a tape: each chunk's
/// logits are built, their gradient taken ([`softcap_cross_entropy_grad`]) and carried back
/// through the head ([`Gemma4TextModel::head_input_grad`], in column blocks of the vocabulary),
/// and both dropped before the next, so no `[n, vocab]` tensor outlives its chunk.
///
/// `hidden` must be off the tape (detached). Returns the loss sum (`[1]` on the device: not read
/// back, so the backward pass queues behind it without a wait), the target count and
/// `∂(scale · loss_sum)/∂hidden` in f32.
///
/// # Shapes
/// - hidden: `[b, s, e]` → grad `[b, s, e]`
pub fn target_loss_and_grad(
    model: &Gemma4TextModel,
    hidden: Tensor<3>,
    ids: &[u32],
    target: &[bool],
    scale: f64,
) -> (Tensor<1>, usize, Tensor<3>) {
    let [b, s, e] = hidden.dims();
    let device = hidden.device();
    let (rows, labels) = target_rows(b, s, ids, target);
    let count = rows.len();
    let flat = hidden.reshape([b * s, e]);
    let mut grad = Tensor::<2>::zeros([b * s, e], (&device, DType::F32));
    let mut total = Tensor::<1>::zeros([1], (&device, DType::F32));
    let rows_per_chunk = chunk_rows(model.config.vocab_size, model.piece_bytes());
    let (split, cap) = (model.head_grad_split(), model.config.final_logit_softcapping);
    for start in (0..count).step_by(rows_per_chunk) {
        let n = rows_per_chunk.min(count - start);
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(rows[start..start + n].to_vec(), [n]),
            &device,
        );
        let lab = Tensor::<1, Int>::from_data(
            TensorData::new(labels[start..start + n].to_vec(), [n]),
            &device,
        );
        let h = flat.clone().select(0, idx.clone()).reshape([1, n, e]);
        let raw = model.lm_head.forward(h).reshape([n, model.config.vocab_size]);
        let dloss = Tensor::<1>::full([n], scale, (&device, DType::F32));
        let (loss, draw) = softcap_cross_entropy_grad(raw, lab, cap, dloss, split);
        grad = grad.select_assign(0, idx, model.head_input_grad(draw), IndexingUpdateOp::Add);
        total = total + loss.sum().reshape([1]);
    }
    (total, count, grad.reshape([b, s, e]))
}

/// Flat hidden-state rows that predict a target token, and those tokens.
/// Each row's `−log p(label)` under the head and the final softcap (f32): one kernel each way
/// on a GPU, so the chunk's `[n, vocab]` f32 logits are never written
/// ([`gemma4_kernels::fused::softcap_cross_entropy`]).
///
/// # Shapes
/// - h: `[1, n, e]`, labels: `[n]` → `[n]`
fn chunk_losses(model: &Gemma4TextModel, h: Tensor<3>, labels: Tensor<1, Int>) -> Tensor<1> {
    let n = labels.dims()[0];
    let raw = model.lm_head.forward(h).reshape([n, model.config.vocab_size]);
    softcap_cross_entropy(raw, labels, model.config.final_logit_softcapping)
}

fn target_rows(b: usize, s: usize, ids: &[u32], target: &[bool]) -> (Vec<i64>, Vec<i64>) {
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for r in 0..b {
        for t in 1..s {
            if target[r * s + t] {
                rows.push((r * s + t - 1) as i64);
                labels.push(ids[r * s + t] as i64);
            }
        }
    }
    (rows, labels)
}
