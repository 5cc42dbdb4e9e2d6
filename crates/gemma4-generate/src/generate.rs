//! Generation: prefill the prompt through the KV cache, then decode one token at a time until a
//! stop token or the token limit, streaming each token to a callback. The same cached forward
//! path as evaluation (`Gemma4TextModel::forward_cached`).

use std::time::Instant;

use burn::tensor::Tensor;
use gemma4_model::{Adapter, Gemma4TextModel, KvCache, ModelError, TokenBatch};

use crate::sampler::Sampler;

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token (not included in `tokens`).
    Stop(u32),
    MaxTokens,
    /// The callback asked to stop.
    Callback,
}

/// What one `generate` call produced.
#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub prompt_tokens: usize,
    pub prompt_tokens_per_s: f64,
    pub generated_tokens_per_s: f64,
}

/// Logits of the last position of a hidden-state chunk, as f32.
fn last_logits(model: &Gemma4TextModel, hidden: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    let [b, n, e] = hidden.dims();
    debug_assert_eq!(b, 1);
    let last = hidden.narrow(1, n - 1, 1).reshape([1, 1, e]);
    model.logits(last).into_data().try_to_vec_as::<f32>().map_err(|e| ModelError::Input(format!("logits: {e:?}")))
}

/// Feed `prompt` (continuing from whatever `cache` already holds) and generate up to
/// `max_new` tokens. `on_token` sees each new token; returning false stops.
#[allow(clippy::too_many_arguments)] // the loop's inputs, each used once; a struct would only rename them
pub fn generate(
    model: &Gemma4TextModel,
    adapter: &dyn Adapter,
    cache: &mut KvCache,
    prompt: &[u32],
    max_new: usize,
    stop_tokens: &[u32],
    sampler: &mut Sampler,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Input("generate: empty prompt".into()));
    }
    let t0 = Instant::now();
    let hidden = model.forward_cached(&TokenBatch::new(prompt.to_vec(), 1, prompt.len()), cache, adapter)?;
    let mut logits = last_logits(model, hidden)?;
    let prompt_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut tokens = Vec::new();
    let mut stop = StopReason::MaxTokens;
    for i in 0..max_new {
        let next = sampler.sample(&logits);
        if stop_tokens.contains(&next) {
            stop = StopReason::Stop(next);
            break;
        }
        tokens.push(next);
        if !on_token(next) {
            stop = StopReason::Callback;
            break;
        }
        if i + 1 == max_new {
            break;
        }
        let hidden = model.forward_cached(&TokenBatch::new(vec![next], 1, 1), cache, adapter)?;
        logits = last_logits(model, hidden)?;
    }
    let gen_s = t1.elapsed().as_secs_f64();
    Ok(Generation {
        prompt_tokens: prompt.len(),
        prompt_tokens_per_s: prompt.len() as f64 / prompt_s.max(1e-9),
        generated_tokens_per_s: tokens.len() as f64 / gen_s.max(1e-9),
        tokens,
        stop,
    })
}
