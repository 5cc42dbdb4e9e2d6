//! The `config.json` text fields as transformers writes them, verbatim, before any default.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Keys transformers writes that do not change the text decoder's math.
pub(super) const IGNORED_KEYS: &[&str] = &[
    "architectures", "transformers_version", "torch_dtype", "dtype", "initializer_range",
    "use_cache", "max_position_embeddings", "attention_dropout", "model_type", "output_attentions",
    "output_hidden_states", "return_dict", "tie_word_embeddings", "is_encoder_decoder",
    "_name_or_path", "chunk_size_feed_forward", "problem_type", "id2label", "label2id",
    "task_specific_params", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "cross_attention_hidden_size", "add_cross_attention", "is_decoder", "pruned_heads",
    "finetuning_task", "rope_traditional", "_sliding_window_pattern",
    "partial_rotary_factor", "global_partial_rotary_factor", "tie_last_hidden_states",
];

/// `config.json` text fields, verbatim. `None` = key absent (HF default applies).
#[derive(Debug, Deserialize)]
pub(super) struct HfTextConfig {
    pub(super) vocab_size: Option<usize>,
    pub(super) hidden_size: Option<usize>,
    pub(super) intermediate_size: Option<usize>,
    pub(super) num_hidden_layers: Option<usize>,
    pub(super) num_attention_heads: Option<usize>,
    pub(super) num_key_value_heads: Option<usize>,
    pub(super) head_dim: Option<usize>,
    pub(super) global_head_dim: Option<usize>,
    pub(super) num_global_key_value_heads: Option<usize>,
    pub(super) per_layer_config: Option<BTreeMap<String, Value>>,
    pub(super) hidden_activation: Option<String>,
    pub(super) hidden_act: Option<String>,
    pub(super) rms_norm_eps: Option<f64>,
    pub(super) pad_token_id: Option<u32>,
    pub(super) eos_token_id: Option<Value>,
    pub(super) bos_token_id: Option<u32>,
    pub(super) tie_word_embeddings: Option<bool>,
    pub(super) rope_parameters: Option<BTreeMap<String, Value>>,
    pub(super) rope_scaling: Option<Value>,
    pub(super) attention_bias: Option<bool>,
    pub(super) sliding_window: Option<usize>,
    pub(super) layer_types: Option<Vec<String>>,
    pub(super) final_logit_softcapping: Option<f64>,
    pub(super) attn_logit_softcapping: Option<f64>,
    /// Gemma 4: `null` / `"vision"` / `"all"`; Gemma 3: a bool.
    pub(super) use_bidirectional_attention: Option<Value>,
    pub(super) query_pre_attn_scalar: Option<f64>,
    /// Gemma 3 legacy RoPE keys (global / local base), folded into `rope_parameters`.
    pub(super) rope_theta: Option<f64>,
    pub(super) rope_local_base_freq: Option<f64>,
    pub(super) sliding_window_pattern: Option<usize>,
    pub(super) vocab_size_per_layer_input: Option<usize>,
    pub(super) hidden_size_per_layer_input: Option<usize>,
    pub(super) attention_k_eq_v: Option<bool>,
    pub(super) num_kv_shared_layers: Option<usize>,
    pub(super) enable_moe_block: Option<bool>,
    pub(super) use_double_wide_mlp: Option<bool>,
    pub(super) num_experts: Option<usize>,
    pub(super) top_k_experts: Option<usize>,
    pub(super) moe_intermediate_size: Option<usize>,
    #[serde(flatten)]
    pub(super) unknown: BTreeMap<String, Value>,
}
