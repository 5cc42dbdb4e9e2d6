//! Parameter counts from the resolved config (what `inspect` prints), without loading weights.

use crate::config::Gemma4TextConfig;

/// Parameter counts of a text decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// Every stored text-decoder parameter (the head counted once when tied).
    pub total: usize,
    /// The PLE lookup table `embed_tokens_per_layer` (0 without PLE).
    pub ple_table: usize,
    /// `embed_tokens` (also the head when tied).
    pub embed_tokens: usize,
    /// The experts' weights (0 without MoE).
    pub experts: usize,
    /// Parameters one token touches: total minus the experts it is not routed to.
    pub active_per_token: usize,
}

impl ParamCounts {
    pub fn from_config(c: &Gemma4TextConfig) -> Self {
        let (v, e, l, d) =
            (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.hidden_size_per_layer_input);
        let bias = |n: usize| if c.attention_bias { n } else { 0 };
        let embed_tokens = v * e;
        let ple_table = if d > 0 { c.vocab_size_per_layer_input * l * d } else { 0 };
        let mut total = embed_tokens + ple_table + e; // + final norm
        if d > 0 {
            total += l * d * e + d; // per_layer_model_projection + per_layer_projection_norm
        }
        if !c.tie_word_embeddings {
            total += v * e;
        }
        let per_expert = 3 * c.moe_intermediate_size * e;
        let mut experts = 0;
        for spec in &c.layers {
            let (h, hd, kv) = (c.num_attention_heads, spec.head_dim, spec.num_key_value_heads);
            total += 4 * e + usize::from(c.layer_scalar); // four norms (+ layer_scalar)
            total += h * hd * e + bias(h * hd) + hd; // q_proj, q_norm
            total += e * h * hd + bias(e); // o_proj
            if spec.kv_donor.is_none() {
                let kv_mats = if spec.k_eq_v { 1 } else { 2 };
                total += kv_mats * (kv * hd * e + bias(kv * hd)) + hd; // k (and v), k_norm
            }
            total += 3 * spec.intermediate_size * e;
            if d > 0 {
                total += 2 * d * e + e;
            }
            if c.enable_moe_block {
                total += c.num_experts * e + e + c.num_experts + 3 * e; // router, 3 norms
                experts += c.num_experts * per_expert;
            }
        }
        total += experts;
        let idle =
            if c.enable_moe_block { l * (c.num_experts - c.top_k_experts) * per_expert } else { 0 };
        Self { total, ple_table, embed_tokens, experts, active_per_token: total - idle }
    }
}
