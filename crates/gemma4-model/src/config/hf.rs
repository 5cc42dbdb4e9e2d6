//! The `config.json` text fields as transformers writes them, verbatim, before any default.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Keys transformers writes that do not change the text decoder's math.
pub(crate) const IGNORED_KEYS: &[&str] = &[
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "initializer_range",
    "use_cache",
    "attention_dropout",
    "model_type",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "tie_word_embeddings",
    "is_encoder_decoder",
    "_name_or_path",
    "chunk_size_feed_forward",
    "problem_type",
    "id2label",
    "label2id",
    "task_specific_params",
    "tokenizer_class",
    "prefix",
    "sep_token_id",
    "decoder_start_token_id",
    "cross_attention_hidden_size",
    "add_cross_attention",
    "is_decoder",
    "pruned_heads",
    "finetuning_task",
    "rope_traditional",
    "_sliding_window_pattern",
    "partial_rotary_factor",
    "global_partial_rotary_factor",
    "tie_last_hidden_states",
];

/// `config.json` text fields, verbatim. `None` = key absent (HF default applies).
#[derive(Debug, Deserialize)]
pub(crate) struct HfTextConfig {
    pub(crate) vocab_size: Option<usize>,
    pub(crate) hidden_size: Option<usize>,
    pub(crate) intermediate_size: Option<usize>,
    pub(crate) num_hidden_layers: Option<usize>,
    pub(crate) num_attention_heads: Option<usize>,
    pub(crate) num_key_value_heads: Option<usize>,
    pub(crate) head_dim: Option<usize>,
    pub(crate) global_head_dim: Option<usize>,
    pub(crate) num_global_key_value_heads: Option<usize>,
    pub(crate) per_layer_config: Option<BTreeMap<String, Value>>,
    pub(crate) hidden_activation: Option<String>,
    pub(crate) hidden_act: Option<String>,
    pub(crate) rms_norm_eps: Option<f64>,
    pub(crate) pad_token_id: Option<u32>,
    pub(crate) eos_token_id: Option<Value>,
    pub(crate) bos_token_id: Option<u32>,
    pub(crate) tie_word_embeddings: Option<bool>,
    pub(crate) rope_parameters: Option<BTreeMap<String, Value>>,
    pub(crate) rope_scaling: Option<Value>,
    pub(crate) attention_bias: Option<bool>,
    pub(crate) sliding_window: Option<usize>,
    pub(crate) max_position_embeddings: Option<usize>,
    pub(crate) layer_types: Option<Vec<String>>,
    pub(crate) final_logit_softcapping: Option<f64>,
    pub(crate) attn_logit_softcapping: Option<f64>,
    /// Gemma 4: `null` / `"vision"` / `"all"`; Gemma 3: a bool.
    pub(crate) use_bidirectional_attention: Option<Value>,
    pub(crate) query_pre_attn_scalar: Option<f64>,
    /// Gemma 3 legacy RoPE keys (global / local base), folded into `rope_parameters`.
    pub(crate) rope_theta: Option<f64>,
    pub(crate) rope_local_base_freq: Option<f64>,
    pub(crate) sliding_window_pattern: Option<usize>,
    pub(crate) vocab_size_per_layer_input: Option<usize>,
    pub(crate) hidden_size_per_layer_input: Option<usize>,
    pub(crate) attention_k_eq_v: Option<bool>,
    pub(crate) num_kv_shared_layers: Option<usize>,
    pub(crate) enable_moe_block: Option<bool>,
    pub(crate) use_double_wide_mlp: Option<bool>,
    pub(crate) num_experts: Option<usize>,
    pub(crate) top_k_experts: Option<usize>,
    pub(crate) moe_intermediate_size: Option<usize>,
    #[serde(flatten)]
    pub(crate) unknown: BTreeMap<String, Value>,
}
