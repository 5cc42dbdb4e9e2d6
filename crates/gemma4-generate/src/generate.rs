//! Generation: prefill the prompt through the KV cache, then decode one token at a time until a
//! stop token or the token limit, streaming each token to a callback. The same cached forward
//! path as evaluation (`Gemma4TextModel::forward_cached`), one [`Decoder`] step at a time.

use std::time::Instant;

use gemma4_model::{Adapter, Gemma4TextModel, KvCache, ModelError};

use crate::decode::{Decoder, logits_f32};
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

/// How much to generate and where to stop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenerateOptions<'a> {
    /// Generate at most this many tokens.
    pub max_new: usize,
    /// Stop at any of these (not included in the output).
    pub stop_tokens: &'a [u32],
}

/// Feed `prompt` (continuing from whatever `cache` already holds) and generate up to
/// `options.max_new` tokens. `on_token` sees each new token; returning false stops.
pub fn generate(
    model: &Gemma4TextModel,
    adapter: &dyn Adapter,
    cache: &mut KvCache,
    prompt: &[u32],
    options: GenerateOptions,
    sampler: &mut Sampler,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation, ModelError> {
    let GenerateOptions { max_new, stop_tokens } = options;
    if prompt.is_empty() {
        return Err(ModelError::Input("generate: empty prompt".into()));
    }
    let t0 = Instant::now();
    let mut decoder = Decoder { model, adapter, cache };
    let mut logits = logits_f32(decoder.step(prompt.to_vec(), 1)?)?;
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
        logits = logits_f32(decoder.step(vec![next], 1)?)?;
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
