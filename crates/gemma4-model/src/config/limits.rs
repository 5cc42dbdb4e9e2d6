//! Sizes from `config.json` (or GGUF metadata) are checked before anything is multiplied or
//! allocated from them (issue 16): each size key has a limit far above every Gemma checkpoint,
//! and a value past it is an error naming the key, not an allocation of terabytes. A value of
//! the wrong type (a negative size, a string) is an error naming its key, not serde's
//! `<fields>`.

use serde_json::Value;

use super::HfTextConfig;
use crate::error::{ModelError, Result};

/// Decoder layers (Gemma 4 31B has 60).
pub const MAX_LAYERS: usize = 1 << 10;
/// Vocabulary rows, of the embedding and of the per-layer embedding (Gemma: 262 144).
pub const MAX_VOCAB: usize = 1 << 24;
/// Hidden, per-layer-input and MLP widths (Gemma 4 31B: 5 376 and 21 504).
pub const MAX_WIDTH: usize = 1 << 20;
/// Attention heads and KV heads; experts.
pub const MAX_HEADS: usize = 1 << 12;
/// Head dimensions (Gemma 4: 256 and 512).
pub const MAX_HEAD_DIM: usize = 1 << 14;

/// Refuse any size of `hf` past its limit, naming the key (`prefix` is `text_config.` for
/// multimodal configs).
pub(crate) fn check_limits(hf: &HfTextConfig, prefix: &str) -> Result<()> {
    let sizes = [
        ("num_hidden_layers", hf.num_hidden_layers, MAX_LAYERS),
        ("num_kv_shared_layers", hf.num_kv_shared_layers, MAX_LAYERS),
        ("vocab_size", hf.vocab_size, MAX_VOCAB),
        ("vocab_size_per_layer_input", hf.vocab_size_per_layer_input, MAX_VOCAB),
        ("hidden_size", hf.hidden_size, MAX_WIDTH),
        ("hidden_size_per_layer_input", hf.hidden_size_per_layer_input, MAX_WIDTH),
        ("intermediate_size", hf.intermediate_size, MAX_WIDTH),
        ("moe_intermediate_size", hf.moe_intermediate_size, MAX_WIDTH),
        ("num_attention_heads", hf.num_attention_heads, MAX_HEADS),
        ("num_key_value_heads", hf.num_key_value_heads, MAX_HEADS),
        ("num_global_key_value_heads", hf.num_global_key_value_heads, MAX_HEADS),
        ("num_experts", hf.num_experts, MAX_HEADS),
        ("top_k_experts", hf.top_k_experts, MAX_HEADS),
        ("head_dim", hf.head_dim, MAX_HEAD_DIM),
        ("global_head_dim", hf.global_head_dim, MAX_HEAD_DIM),
    ];
    for (key, value, limit) in sizes {
        if let Some(v) = value.filter(|&v| v > limit) {
            return Err(ModelError::invalid(
                format!("{prefix}{key}"),
                format!("{v} is past the limit {limit} (no Gemma model comes near it)"),
            ));
        }
    }
    Ok(())
}

/// `e` (serde's failure to read `text` as [`HfTextConfig`]) as an error naming the key at
/// fault: each key is read alone until one fails.
pub(crate) fn name_bad_key(text: &Value, prefix: &str, e: &serde_json::Error) -> ModelError {
    let culprit = text.as_object().and_then(|obj| {
        obj.iter().find_map(|(k, v)| {
            let one = Value::Object([(k.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<HfTextConfig>(one).err().map(|e| (k.clone(), v.clone(), e))
        })
    });
    match culprit {
        Some((key, value, e)) => {
            ModelError::invalid(format!("{prefix}{key}"), format!("{value} is invalid: {e}"))
        }
        None => ModelError::invalid(format!("{prefix}<fields>"), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::Gemma4TextConfig;

    fn error_of(json: serde_json::Value) -> String {
        Gemma4TextConfig::from_json(&json).unwrap_err().to_string()
    }

    #[test]
    fn a_huge_layer_count_is_refused_naming_the_key_before_any_allocation() {
        let e = error_of(json!({"model_type": "gemma4_text", "num_hidden_layers": 1u64 << 50}));
        assert!(e.contains("`num_hidden_layers`") && e.contains("past the limit 1024"), "{e}");
        let e =
            error_of(json!({"model_type": "gemma4", "text_config": {"vocab_size": 1u64 << 40}}));
        assert!(e.contains("`text_config.vocab_size`"), "{e}");
    }

    #[test]
    fn a_negative_size_names_its_key() {
        let e = error_of(json!({"model_type": "gemma4_text", "hidden_size": 8, "head_dim": -4}));
        assert!(e.contains("`head_dim`") && e.contains("-4"), "{e}");
        assert!(!e.contains("<fields>"), "{e}");
    }
}
