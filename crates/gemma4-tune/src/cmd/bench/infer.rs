//! `bench`'s inference phases: prefill (forward over `[batch, seq]`, head on the last position)
//! and greedy decode through the KV cache with gemma4-generate's [`Decoder`] (the `generate`
//! path).

use std::time::Instant;

use anyhow::Result;
use gemma4_generate::Decoder;
use gemma4_model::{Adapter, Gemma4TextModel, KvCache, TokenBatch};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::flops::Flops;
use super::report::Peaks;
use super::run::{BenchSettings, mean, random_batch, secs};

/// Forward-only passes over `[batch, seq]`, head on the last position.
pub fn prefill(
    model: &Gemma4TextModel,
    adapter: &dyn Adapter,
    s: &BenchSettings,
    rng: &mut ChaCha8Rng,
    flops: &Flops,
    peaks: &mut Peaks,
) -> Result<Value> {
    let mut times = Vec::new();
    for i in 0..=s.prefill_runs {
        let b = random_batch(rng, s.batch, s.seq, model.config.vocab_size);
        let t = Instant::now();
        let hidden =
            model.forward_hidden(&TokenBatch::new(b.ids, s.batch, s.seq), adapter, false)?.hidden;
        let last = model.logits(hidden.narrow(1, s.seq - 1, 1)).argmax(2);
        let _ = last.into_data();
        peaks.sample();
        if i > 0 {
            times.push(secs(t)); // the first run warms up
        }
    }
    let (tokens, time) = ((s.batch * s.seq) as f64, mean(&times));
    Ok(
        json!({"tokens": tokens, "time_s": time, "tokens_per_s": tokens / time, "tflops": flops.prefill() * tokens / time / 1e12}),
    )
}

/// A prompt into the KV cache, then greedy single-token steps.
pub fn decode(
    model: &Gemma4TextModel,
    adapter: &dyn Adapter,
    s: &BenchSettings,
    rng: &mut ChaCha8Rng,
    peaks: &mut Peaks,
) -> Result<Value> {
    let (b, vocab) = (s.decode_batch, model.config.vocab_size);
    let mut cache = KvCache::new(&model.config);
    let mut decoder = Decoder { model, adapter, cache: &mut cache };
    let prompt = random_batch(rng, b, s.prompt.max(1), vocab);
    let mut next = decoder.greedy(prompt.ids, b)?;
    for _ in 0..4 {
        // Warm-up steps (kernel compilation and autotuning); the cache keeps growing as in real use.
        next = decoder.greedy(next, b)?;
    }
    let t = Instant::now();
    for _ in 0..s.decode_tokens {
        next = decoder.greedy(next, b)?;
    }
    let time = secs(t);
    peaks.sample();
    let tokens = (b * s.decode_tokens) as f64;
    Ok(
        json!({"batch": b, "prompt": s.prompt, "new_tokens": s.decode_tokens, "time_s": time, "tokens_per_s": tokens / time}),
    )
}
