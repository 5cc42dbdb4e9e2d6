//! Gemma 3 text configs (`gemma3_text`, `gemma3` with `text_config`) resolved onto the same
//! structure as Gemma 4, switched by values: `1 + w` norms, `query_pre_attn_scalar`, no v norm,
//! full-width RoPE with a local and a global base (HF `configuration_gemma3.py`, transformers 5.24).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{
    Gemma4TextConfig, HfTextConfig, LayerType, derive_layers, parse_eos, resolve_layer_types,
    resolve_rope, validate,
};
use crate::error::{ModelError, Result};

/// Gemma 3 (`Gemma3TextConfig`, configuration_gemma3.py, transformers 5.24): the Gemma 4 decoder
/// without PLE, KV sharing, MoE, V norm or `layer_scalar`; norms are `x̂·(1 + w)`, scores are
/// scaled by `query_pre_attn_scalar^-½`, RoPE is full-width on every layer (local base on sliding
/// layers, global base and `rope_scaling` on full ones), and the last layer is NOT forced to full.
pub(crate) fn resolve_gemma3(hf: HfTextConfig, multimodal: bool) -> Result<Gemma4TextConfig> {
    let act = hf
        .hidden_activation
        .clone()
        .or(hf.hidden_act.clone())
        .unwrap_or_else(|| "gelu_pytorch_tanh".into());
    if act != "gelu_pytorch_tanh" {
        return Err(ModelError::unsupported("hidden_activation", format!("{act:?}")));
    }
    match &hf.use_bidirectional_attention {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(v) => return Err(ModelError::unsupported("use_bidirectional_attention", v)),
    }
    if let Some(v) = hf.attn_logit_softcapping {
        // transformers 5.24 stores it but never passes it to the attention function.
        return Err(ModelError::Unsupported {
            key: "attn_logit_softcapping".into(),
            value: v.to_string(),
            hint: Some("Gemma 3 checkpoints set it to null; transformers 5.24 ignores it".into()),
        });
    }
    let n = hf.num_hidden_layers.unwrap_or(26);
    let layer_types = match hf.layer_types.clone() {
        Some(list) => resolve_layer_types(Some(list), n, false)?,
        None => {
            let p = hf.sliding_window_pattern.unwrap_or(6).max(1);
            (0..n)
                .map(|i| if (i + 1) % p == 0 { LayerType::Full } else { LayerType::Sliding })
                .collect()
        }
    };
    let rope_parameters =
        resolve_rope(Some(gemma3_rope_parameters(&hf)?), &layer_types, &["default", "linear"])?;
    let head_dim = hf.head_dim.unwrap_or(256);
    let mut cfg = Gemma4TextConfig {
        vocab_size: hf.vocab_size.unwrap_or(262_208),
        hidden_size: hf.hidden_size.unwrap_or(2304),
        intermediate_size: hf.intermediate_size.unwrap_or(9216),
        num_hidden_layers: n,
        num_attention_heads: hf.num_attention_heads.unwrap_or(8),
        num_key_value_heads: hf.num_key_value_heads.unwrap_or(4),
        head_dim,
        rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        attention_bias: hf.attention_bias.unwrap_or(false),
        sliding_window: hf.sliding_window.unwrap_or(4096),
        max_position_embeddings: hf.max_position_embeddings,
        bidirectional: false,
        final_logit_softcapping: hf.final_logit_softcapping,
        vocab_size_per_layer_input: 0,
        hidden_size_per_layer_input: 0,
        attention_k_eq_v: false,
        num_kv_shared_layers: 0,
        use_double_wide_mlp: false,
        enable_moe_block: false,
        num_experts: 0,
        top_k_experts: 0,
        moe_intermediate_size: 0,
        pad_token_id: hf.pad_token_id.or(Some(0)),
        bos_token_id: hf.bos_token_id.or(Some(2)),
        eos_token_ids: parse_eos(hf.eos_token_id)?,
        rope_parameters,
        layers: Vec::new(),
        multimodal,
        norm_weight_offset: 1.0,
        attention_scale: hf.query_pre_attn_scalar.unwrap_or(256.0).powf(-0.5),
        v_norm: false,
        layer_scalar: false,
    };
    cfg.layers = derive_layers(&cfg, &layer_types, &vec![(None, None); n])?;
    validate(&cfg)?;
    Ok(cfg)
}

/// Gemma 3 RoPE as `Gemma3TextConfig.convert_rope_params_to_dict` builds it: `rope_parameters`
/// per layer type when given, else `rope_local_base_freq` (sliding, default 10 000) and
/// `rope_theta` (full, default 1 000 000) with `rope_scaling` merged into the full-layer dict.
fn gemma3_rope_parameters(hf: &HfTextConfig) -> Result<BTreeMap<String, Value>> {
    let mut params = hf.rope_parameters.clone().unwrap_or_default();
    let mut entry = |lt: LayerType, theta: f64| -> Result<()> {
        let e = params
            .entry(lt.hf_name().to_owned())
            .or_insert_with(|| serde_json::json!({"rope_type": "default"}));
        if e.is_null() {
            *e = serde_json::json!({"rope_type": "default"});
        }
        let obj = e.as_object_mut().ok_or_else(|| {
            ModelError::invalid(format!("rope_parameters.{}", lt.hf_name()), "expected an object")
        })?;
        if lt == LayerType::Full
            && let Some(Value::Object(scaling)) = &hf.rope_scaling
        {
            for (k, v) in scaling {
                obj.insert(k.clone(), v.clone());
            }
        }
        // Legacy `type`: HF 5.24 merges `rope_scaling` into a dict that already says
        // `rope_type: default`, so `type` alone never takes effect there; it only names the
        // type when `rope_type` is absent.
        if let Some(t) = obj.remove("type") {
            obj.entry("rope_type").or_insert(t);
        }
        obj.entry("rope_theta").or_insert(serde_json::json!(theta));
        Ok(())
    };
    entry(LayerType::Full, hf.rope_theta.unwrap_or(1_000_000.0))?;
    entry(LayerType::Sliding, hf.rope_local_base_freq.unwrap_or(10_000.0))?;
    Ok(params)
}
