//! The tiny built-in model: a small random-weight Gemma 4 (sliding + full attention, PLE, KV
//! sharing, double-wide MLP, softcap) with the repo's own small tokenizer, written as an HF
//! checkpoint directory so every command can use it like a real one.

use std::path::Path;

use gemma4_model::Gemma4TextConfig;
use gemma4_model::expected_tensors;
use gemma4_store::F32Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};

/// `config.json` of the tiny model for a vocabulary of `vocab` tokens.
pub fn tiny_config(vocab: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Gemma4ForCausalLM"],
        "model_type": "gemma4_text",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 32,
        "sliding_window": 16,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                        "sliding_attention", "sliding_attention", "full_attention"],
        "num_kv_shared_layers": 2,
        "use_double_wide_mlp": true,
        "hidden_size_per_layer_input": 16,
        "vocab_size_per_layer_input": vocab,
        "final_logit_softcapping": 30.0,
        "tie_word_embeddings": true,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0}
        },
        "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1,
        "dtype": "float32"
    })
}

/// Write the tiny model (config.json, model.safetensors, tokenizer.json) into `dir`, unless
/// it is already there. Norms and `layer_scalar` 1; projections normal(0, 0.05); the (tied)
/// embeddings normal(0, 0.5) — at HF's 0.02 the tied head bounds every logit near ±1 and no
/// adapter could move the loss far from uniform.
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<()> {
    if dir.join("model.safetensors").is_file()
        && dir.join("config.json").is_file()
        && dir.join("tokenizer.json").is_file()
    {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tokenizer_json = gemma4_data::tiny_tokenizer_json();
    let vocab = gemma4_data::tiny_tokenizer().vocab_size();
    let config = tiny_config(vocab);
    let cfg = Gemma4TextConfig::from_json(&config)?.config;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (name, shape) in expected_tensors(&cfg, "model.") {
        let n: usize = shape.iter().product();
        let is_scale = name.ends_with("norm.weight") || name.ends_with("layer_scalar");
        let std = if name.contains("embed_tokens") { 0.5 } else { 0.05 };
        let values: Vec<f32> =
            (0..n).map(|_| if is_scale { 1.0 } else { std * normal(&mut rng) }).collect();
        tensors.push((name, shape, values));
    }
    let views: Vec<F32Tensor> =
        tensors.iter().map(|(name, shape, values)| F32Tensor { name, shape, values }).collect();
    gemma4_store::write_f32(&dir.join("model.safetensors"), &views, &[("format", "pt")])?;
    let pretty = serde_json::to_string_pretty(&config).unwrap_or_default();
    gemma4_store::write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    gemma4_store::write_atomic(&dir.join("config.json"), pretty.as_bytes())?;
    Ok(())
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
