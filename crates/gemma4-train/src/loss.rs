//! Next-token cross-entropy in f32, with the model's final softcap, computed only at trained
//! positions and in chunks of rows: the `[b, s, 262144]` logits of a real vocabulary never exist
//! at once.

use burn::tensor::{DType, Int, Tensor, TensorData, activation::log_softmax};
use gemma4_model::Gemma4TextModel;

/// Rows of hidden states per logits chunk.
pub const CHUNK_ROWS: usize = 1024;

/// Sum of the cross-entropy over target tokens, and how many there are.
///
/// `target[r·s + t]` marks token `t` of row `r` as trained: it is predicted from the hidden
/// state at `t − 1`.
///
/// # Shapes
/// - hidden: `[b, s, e]` (after the final norm), ids/target: `b·s` → `[1]` (f32)
pub fn target_loss_sum(model: &Gemma4TextModel, hidden: Tensor<3>, ids: &[u32], target: &[bool]) -> (Tensor<1>, usize) {
    let [b, s, e] = hidden.dims();
    let device = hidden.device();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for r in 0..b {
        for t in 1..s {
            if target[r * s + t] {
                rows.push((r * s + t - 1) as i64);
                labels.push(ids[r * s + t] as i64);
            }
        }
    }
    let count = rows.len();
    let flat = hidden.reshape([b * s, e]);
    let mut total = Tensor::<1>::zeros([1], (&device, DType::F32));
    for start in (0..count).step_by(CHUNK_ROWS) {
        let n = CHUNK_ROWS.min(count - start);
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows[start..start + n].to_vec(), [n]), &device);
        let lab = Tensor::<2, Int>::from_data(TensorData::new(labels[start..start + n].to_vec(), [n, 1]), &device);
        let h = flat.clone().select(0, idx).reshape([1, n, e]);
        let logits = model.logits(h).reshape([n, model.config.vocab_size]); // f32, softcapped
        let picked = log_softmax(logits, 1).gather(1, lab); // [n, 1]
        total = total - picked.sum().reshape([1]);
    }
    (total, count)
}
