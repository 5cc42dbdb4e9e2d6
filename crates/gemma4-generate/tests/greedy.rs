//! Greedy generation with the KV cache equals transformers' `generate` (greedy) on the fixtures
//! (`tests/reference/generate_goldens.py`): prompts of 10 tokens, 12 new tokens, past the
//! sliding window so the rotating cache and the KV-shared layers are exercised.

use std::path::PathBuf;

use burn::tensor::{DType, Device};
use gemma4_generate::{GenerateOptions, Sampler, SamplingConfig, StopReason, generate};
use gemma4_model::{Gemma4TextModel, KvCache, NoAdapter};
use safetensors::SafeTensors;

fn ids(st: &SafeTensors, name: &str) -> Vec<u32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in
        ["dense", "e2b_like", "moe_keqv", "keqv_bias_untied", "multimodal", "per_layer_config"]
    {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name);
        let bytes = std::fs::read(dir.join("generate.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (prompt, want) = (ids(&st, "prompt_ids"), ids(&st, "greedy_ids"));
        let (model, _, _) = Gemma4TextModel::from_dir(&dir, &Device::flex(), DType::F32).unwrap();
        let mut cache = KvCache::new(&model.config);
        let mut sampler = Sampler::new(SamplingConfig::default());
        let mut streamed = Vec::new();
        let out = generate(
            &model,
            &NoAdapter,
            &mut cache,
            &prompt,
            GenerateOptions { max_new: want.len(), stop_tokens: &[] },
            &mut sampler,
            |t| {
                streamed.push(t);
                true
            },
        )
        .unwrap();
        assert_eq!(out.tokens, want, "{name}");
        assert_eq!(streamed, want);
        assert_eq!(out.stop, StopReason::MaxTokens);
        assert_eq!(cache.offset, prompt.len() + want.len() - 1);
    }
}

#[test]
fn generation_stops_on_a_stop_token() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keqv_bias_untied");
    let bytes = std::fs::read(dir.join("generate.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (prompt, want) = (ids(&st, "prompt_ids"), ids(&st, "greedy_ids"));
    let (model, _, _) = Gemma4TextModel::from_dir(&dir, &Device::flex(), DType::F32).unwrap();
    let mut cache = KvCache::new(&model.config);
    let out = generate(
        &model,
        &NoAdapter,
        &mut cache,
        &prompt,
        GenerateOptions { max_new: 50, stop_tokens: &[want[2]] },
        &mut Sampler::new(SamplingConfig::default()),
        |_| true,
    )
    .unwrap();
    assert_eq!(out.tokens, want[..2].to_vec());
    assert_eq!(out.stop, StopReason::Stop(want[2]));
}

/// Cached generation equals argmax decoding with the full no-cache forward at every step.
#[test]
fn cached_generation_equals_no_cache_argmax_decoding() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/e2b_like");
    let bytes = std::fs::read(dir.join("generate.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let prompt = ids(&st, "prompt_ids");
    let (model, _, _) = Gemma4TextModel::from_dir(&dir, &Device::flex(), DType::F32).unwrap();
    let mut seq = prompt.clone();
    for _ in 0..10 {
        let batch = gemma4_model::TokenBatch::new(seq.clone(), 1, seq.len());
        let logits: Vec<f32> = model
            .logits(model.forward_hidden(&batch, &NoAdapter, false).unwrap().hidden)
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        let v = model.config.vocab_size;
        seq.push(gemma4_generate::sampler::argmax(&logits[(seq.len() - 1) * v..]));
    }
    let mut cache = KvCache::new(&model.config);
    let out = generate(
        &model,
        &NoAdapter,
        &mut cache,
        &prompt,
        GenerateOptions { max_new: 10, stop_tokens: &[] },
        &mut Sampler::new(SamplingConfig::default()),
        |_| true,
    )
    .unwrap();
    assert_eq!(out.tokens, seq[prompt.len()..].to_vec());
}
