//! HF tensor names (below the text prefix, `{i}` = layer) ↔ llama.cpp's (`src/llama-arch.cpp`
//! `LLM_TENSOR_NAMES`, `%d` written `{i}`). The reader's `gguf::hf_name` maps the Gemma 3 subset
//! the other way; a test holds the two to each other.

/// `(HF name below the text prefix, llama.cpp name)`.
pub const LLAMA_NAMES: &[(&str, &str)] = &[
    ("embed_tokens.weight", "token_embd.weight"),
    ("norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
    ("embed_tokens_per_layer.weight", "per_layer_token_embd.weight"),
    ("per_layer_model_projection.weight", "per_layer_model_proj.weight"),
    ("per_layer_projection_norm.weight", "per_layer_proj_norm.weight"),
    ("layers.{i}.input_layernorm.weight", "blk.{i}.attn_norm.weight"),
    ("layers.{i}.post_attention_layernorm.weight", "blk.{i}.post_attention_norm.weight"),
    ("layers.{i}.pre_feedforward_layernorm.weight", "blk.{i}.ffn_norm.weight"),
    ("layers.{i}.post_feedforward_layernorm.weight", "blk.{i}.post_ffw_norm.weight"),
    ("layers.{i}.self_attn.q_proj.weight", "blk.{i}.attn_q.weight"),
    ("layers.{i}.self_attn.k_proj.weight", "blk.{i}.attn_k.weight"),
    ("layers.{i}.self_attn.v_proj.weight", "blk.{i}.attn_v.weight"),
    ("layers.{i}.self_attn.o_proj.weight", "blk.{i}.attn_output.weight"),
    ("layers.{i}.self_attn.q_norm.weight", "blk.{i}.attn_q_norm.weight"),
    ("layers.{i}.self_attn.k_norm.weight", "blk.{i}.attn_k_norm.weight"),
    ("layers.{i}.mlp.gate_proj.weight", "blk.{i}.ffn_gate.weight"),
    ("layers.{i}.mlp.up_proj.weight", "blk.{i}.ffn_up.weight"),
    ("layers.{i}.mlp.down_proj.weight", "blk.{i}.ffn_down.weight"),
    ("layers.{i}.layer_scalar", "blk.{i}.layer_output_scale.weight"),
    ("layers.{i}.per_layer_input_gate.weight", "blk.{i}.inp_gate.weight"),
    ("layers.{i}.per_layer_projection.weight", "blk.{i}.proj.weight"),
    ("layers.{i}.post_per_layer_input_norm.weight", "blk.{i}.post_norm.weight"),
];

/// The llama.cpp name of an HF tensor name below the text prefix (`layers.3.mlp.up_proj.weight`
/// → `blk.3.ffn_up.weight`); `None` for a tensor llama.cpp has no name for here.
pub fn llama_name(hf: &str) -> Option<String> {
    if let Some(&(_, l)) = LLAMA_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(l.to_owned());
    }
    let rest = hf.strip_prefix("layers.")?;
    let (i, rest) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let &(_, l) = LLAMA_NAMES
        .iter()
        .find(|(h, _)| h.strip_prefix("layers.{i}.").is_some_and(|h| h == rest))?;
    Some(l.replace("{i}", &i.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::hf_name;

    #[test]
    fn names_invert_the_readers_mapping() {
        let mut checked = 0;
        for (hf, _) in LLAMA_NAMES {
            let hf = hf.replace("{i}", "7");
            let llama = llama_name(&hf).unwrap();
            // Every name the reader knows maps back to the same HF name.
            if let Some((back, _)) = hf_name(&llama) {
                let back = back.strip_prefix("model.").unwrap_or(&back);
                assert_eq!(back, hf, "{llama}");
                checked += 1;
            }
        }
        assert_eq!(checked, 16, "the reader's Gemma 3 names");
        assert_eq!(llama_name("layers.12.mlp.up_proj.weight").unwrap(), "blk.12.ffn_up.weight");
        assert_eq!(llama_name("layers.x.mlp.up_proj.weight"), None);
        assert_eq!(llama_name("layers.0.router.proj.weight"), None);
    }
}
