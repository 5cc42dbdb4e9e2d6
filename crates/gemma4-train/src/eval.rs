//! Validation: token-weighted mean next-token loss over a split (all of it, or its first N
//! batches in a seeded order), with the adapter in inference mode and no gradients tracked.

use gemma4_data::{Batcher, Split};
use gemma4_lora::LoraAdapter;
use gemma4_model::Gemma4TextModel;

use crate::error::{Result, TrainError};
use crate::loss::target_loss_sum;
use crate::recipe::Recipe;
use crate::step::token_batch;

/// Mean loss per target token over `split` (`max_batches` = 0: all batches); `adapter`
/// `None` evaluates the base model.
pub fn evaluate(
    model: &Gemma4TextModel,
    adapter: Option<&LoraAdapter>,
    split: &Split,
    recipe: &Recipe,
    max_batches: usize,
) -> Result<f64> {
    let frozen = adapter.map(|a| {
        let mut f = a.clone();
        f.training = false;
        f.map_tensors(|_, t| t.detach().set_require_grad(false));
        f
    });
    let frozen: &dyn gemma4_model::Adapter = match &frozen {
        Some(f) => f,
        None => &gemma4_model::NoAdapter,
    };
    let batches =
        Batcher::new(split, recipe.train.batch_size, recipe.data.packing, recipe.data.max_seq_len)?
            .epoch(0, recipe.train.seed);
    let take = if max_batches == 0 { batches.len() } else { max_batches.min(batches.len()) };
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for b in &batches[..take] {
        let hidden = model.forward_hidden(&token_batch(b), frozen, false)?.hidden;
        let (s, n) = target_loss_sum(model, hidden, &b.ids, &b.target);
        sum += s.into_scalar::<f32>() as f64;
        tokens += n;
    }
    if tokens == 0 {
        return Err(TrainError::Run(format!(
            "{}: no target tokens to evaluate",
            split.path.display()
        )));
    }
    Ok(sum / tokens as f64)
}
