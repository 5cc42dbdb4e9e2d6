//! HF's defaults and post-processing applied to [`HfTextConfig`], then the per-layer structure
//! derived and validated (`configuration_gemma4.py`, transformers 5.24).

use super::*;

/// Apply HF defaults and post-processing, then derive the per-layer structure.
pub(crate) fn resolve(hf: HfTextConfig, multimodal: bool) -> Result<Gemma4TextConfig> {
    // Defaults: HF `Gemma4TextConfig` (configuration_gemma4.py, transformers 5.24).
    let num_hidden_layers = hf.num_hidden_layers.unwrap_or(30);
    let act = hf.hidden_activation.or(hf.hidden_act).unwrap_or_else(|| "gelu_pytorch_tanh".into());
    if act != "gelu_pytorch_tanh" {
        return Err(ModelError::unsupported("hidden_activation", format!("{act:?}")));
    }
    // "vision" only changes attention between image tokens (text-only input is causal);
    // "all" makes every layer non-causal (HF `is_causal = False`).
    let bidirectional = match &hf.use_bidirectional_attention {
        None | Some(Value::Null) => false,
        Some(Value::String(v)) if v == "vision" => false,
        Some(Value::String(v)) if v == "all" => true,
        Some(v) => return Err(ModelError::unsupported("use_bidirectional_attention", v)),
    };
    if let Some(v) = hf.attn_logit_softcapping {
        return Err(ModelError::unsupported("attn_logit_softcapping", v));
    }
    if hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ModelError::Unsupported {
            key: "rope_scaling".into(),
            value: "(set)".into(),
            hint: Some("Gemma 4 takes RoPE settings from `rope_parameters`".into()),
        });
    }
    let layer_types = resolve_layer_types(hf.layer_types, num_hidden_layers, true)?;
    let rope_parameters =
        resolve_rope(hf.rope_parameters, &layer_types, &["default", "proportional"])?;

    let mut cfg = Gemma4TextConfig {
        vocab_size: hf.vocab_size.unwrap_or(262_144),
        hidden_size: hf.hidden_size.unwrap_or(2304),
        intermediate_size: hf.intermediate_size.unwrap_or(9216),
        num_hidden_layers,
        num_attention_heads: hf.num_attention_heads.unwrap_or(8),
        num_key_value_heads: hf.num_key_value_heads.unwrap_or(4),
        head_dim: hf.head_dim.unwrap_or(256),
        rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(true),
        attention_bias: hf.attention_bias.unwrap_or(false),
        sliding_window: hf.sliding_window.unwrap_or(512),
        max_position_embeddings: hf.max_position_embeddings,
        bidirectional,
        final_logit_softcapping: hf.final_logit_softcapping,
        vocab_size_per_layer_input: hf.vocab_size_per_layer_input.unwrap_or(262_144),
        hidden_size_per_layer_input: hf.hidden_size_per_layer_input.unwrap_or(256),
        attention_k_eq_v: hf.attention_k_eq_v.unwrap_or(false),
        num_kv_shared_layers: hf.num_kv_shared_layers.unwrap_or(0),
        use_double_wide_mlp: hf.use_double_wide_mlp.unwrap_or(false),
        enable_moe_block: hf.enable_moe_block.unwrap_or(false),
        num_experts: 0,
        top_k_experts: 0,
        moe_intermediate_size: 0,
        pad_token_id: hf.pad_token_id.or(Some(0)),
        bos_token_id: hf.bos_token_id.or(Some(2)),
        eos_token_ids: parse_eos(hf.eos_token_id)?,
        rope_parameters,
        layers: Vec::new(),
        multimodal,
        norm_weight_offset: 0.0,
        attention_scale: 1.0,
        v_norm: true,
        layer_scalar: true,
    };
    if cfg.enable_moe_block {
        resolve_moe(&mut cfg, [hf.num_experts, hf.top_k_experts, hf.moe_intermediate_size])?;
    }
    let overrides = resolve_overrides(
        hf.per_layer_config,
        hf.global_head_dim,
        hf.num_global_key_value_heads,
        &cfg,
        &layer_types,
    )?;
    cfg.layers = derive_layers(&cfg, &layer_types, &overrides)?;
    validate(&cfg)?;
    Ok(cfg)
}

/// The MoE sizes `[num_experts, top_k_experts, moe_intermediate_size]`, each required (> 0)
/// when `enable_moe_block` is true.
fn resolve_moe(
    cfg: &mut Gemma4TextConfig,
    [experts, top_k, width]: [Option<usize>; 3],
) -> Result<()> {
    let need = |v: Option<usize>, key: &str| {
        v.filter(|&x| x > 0)
            .ok_or_else(|| ModelError::invalid(key, "required (> 0) when enable_moe_block is true"))
    };
    cfg.num_experts = need(experts, "num_experts")?;
    cfg.top_k_experts = need(top_k, "top_k_experts")?;
    cfg.moe_intermediate_size = need(width, "moe_intermediate_size")?;
    if cfg.top_k_experts > cfg.num_experts {
        return Err(ModelError::invalid("top_k_experts", "larger than num_experts"));
    }
    Ok(())
}

pub(crate) fn parse_eos(v: Option<Value>) -> Result<Vec<u32>> {
    let bad = || ModelError::invalid("eos_token_id", "expected an integer or a list of integers");
    match v {
        None => Ok(vec![1]),
        Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(bad)? as u32]),
        Some(Value::Array(a)) => {
            a.iter().map(|x| x.as_u64().map(|n| n as u32).ok_or_else(bad)).collect()
        }
        Some(_) => Err(bad()),
    }
}

/// HF: 5:1 sliding:full pattern when absent; the last layer is forced to full attention.
pub(crate) fn resolve_layer_types(
    types: Option<Vec<String>>,
    n: usize,
    force_last_full: bool,
) -> Result<Vec<LayerType>> {
    let mut out = match types {
        None => (0..n)
            .map(|i| if (i + 1) % 6 == 0 { LayerType::Full } else { LayerType::Sliding })
            .collect::<Vec<_>>(),
        Some(list) => {
            if list.len() != n {
                return Err(ModelError::invalid(
                    "layer_types",
                    format!("has {} entries but num_hidden_layers is {n}", list.len()),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    LayerType::parse(s).ok_or_else(|| {
                        ModelError::unsupported(format!("layer_types[{i}]"), format!("{s:?}"))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    if let (true, Some(last)) = (force_last_full, out.last_mut()) {
        *last = LayerType::Full; // HF Gemma4TextConfig.__post_init__ forces this (with a warning).
    }
    Ok(out)
}

/// Per-layer `(head_dim, num_key_value_heads)` overrides, from either spelling:
/// `per_layer_config` (newer transformers: `{"<layer>": {"head_dim": .., "num_key_value_heads": ..}}`)
/// or the older `global_head_dim` / `num_global_key_value_heads` keys (full layers only).
pub(crate) fn resolve_overrides(
    per_layer: Option<BTreeMap<String, Value>>,
    global_head_dim: Option<usize>,
    global_kv: Option<usize>,
    cfg: &Gemma4TextConfig,
    types: &[LayerType],
) -> Result<Vec<(Option<usize>, Option<usize>)>> {
    let n = types.len();
    let mut out = vec![(None, None); n];
    match per_layer {
        // HF ignores `global_head_dim` when `per_layer_config` is given.
        Some(map) => {
            for (key, v) in map {
                let targets: Vec<usize> = if let Ok(i) = key.parse::<usize>() {
                    if i >= n {
                        return Err(ModelError::invalid(
                            format!("per_layer_config.{key}"),
                            format!("layer index out of range (num_hidden_layers = {n})"),
                        ));
                    }
                    vec![i]
                } else if let Some(lt) = LayerType::parse(&key) {
                    (0..n).filter(|&i| types[i] == lt).collect()
                } else {
                    return Err(ModelError::invalid(
                        format!("per_layer_config.{key}"),
                        "expected a layer index",
                    ));
                };
                let obj = v.as_object().ok_or_else(|| {
                    ModelError::invalid(format!("per_layer_config.{key}"), "expected an object")
                })?;
                let mut hd = None;
                let mut kv = None;
                for (field, val) in obj {
                    let parsed = || val.as_u64().map(|x| x as usize);
                    match field.as_str() {
                        "head_dim" => hd = parsed().or(Some(cfg.head_dim)),
                        "num_key_value_heads" => kv = parsed().or(Some(cfg.num_key_value_heads)),
                        _ => {
                            return Err(ModelError::unsupported(
                                format!("per_layer_config.{key}.{field}"),
                                val,
                            ));
                        }
                    }
                }
                for i in targets {
                    out[i] = (hd.or(out[i].0), kv.or(out[i].1));
                }
            }
        }
        None => {
            let hd =
                Some(global_head_dim.filter(|&d| d > 0).unwrap_or(if global_head_dim.is_some() {
                    cfg.head_dim
                } else {
                    512
                }));
            let kv = if cfg.attention_k_eq_v { global_kv } else { None };
            for i in 0..n {
                if types[i] == LayerType::Full {
                    out[i] = (hd, kv);
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn derive_layers(
    cfg: &Gemma4TextConfig,
    types: &[LayerType],
    overrides: &[(Option<usize>, Option<usize>)],
) -> Result<Vec<LayerSpec>> {
    let n = cfg.num_hidden_layers;
    if cfg.num_kv_shared_layers > n {
        return Err(ModelError::invalid(
            "num_kv_shared_layers",
            format!("{} > num_hidden_layers {n}", cfg.num_kv_shared_layers),
        ));
    }
    let first_shared = n - cfg.num_kv_shared_layers;
    let mut layers = Vec::with_capacity(n);
    for (i, &layer_type) in types.iter().enumerate() {
        let kv_donor = if i >= first_shared {
            // HF kv_sharing_modes: the last non-shared layer of the same type.
            let donor = (0..first_shared).rev().find(|&j| types[j] == layer_type);
            Some(donor.ok_or_else(|| {
                ModelError::invalid(
                    "num_kv_shared_layers",
                    format!(
                        "layer {i} ({}) shares K/V but no earlier non-shared layer has that type",
                        layer_type.hf_name()
                    ),
                )
            })?)
        } else {
            None
        };
        let double = cfg.use_double_wide_mlp && kv_donor.is_some();
        layers.push(LayerSpec {
            layer_type,
            head_dim: overrides[i].0.unwrap_or(cfg.head_dim),
            num_key_value_heads: overrides[i].1.unwrap_or(cfg.num_key_value_heads),
            k_eq_v: cfg.attention_k_eq_v && layer_type == LayerType::Full,
            kv_donor,
            intermediate_size: cfg.intermediate_size * if double { 2 } else { 1 },
        });
    }
    Ok(layers)
}

pub(crate) fn validate(cfg: &Gemma4TextConfig) -> Result<()> {
    let positive = [
        ("vocab_size", cfg.vocab_size),
        ("hidden_size", cfg.hidden_size),
        ("intermediate_size", cfg.intermediate_size),
        ("num_hidden_layers", cfg.num_hidden_layers),
        ("num_attention_heads", cfg.num_attention_heads),
        ("sliding_window", cfg.sliding_window),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(ModelError::invalid(key, "must be > 0"));
        }
    }
    if cfg.hidden_size_per_layer_input > 0 && cfg.vocab_size_per_layer_input == 0 {
        return Err(ModelError::invalid(
            "vocab_size_per_layer_input",
            "must be > 0 when hidden_size_per_layer_input > 0",
        ));
    }
    for (i, l) in cfg.layers.iter().enumerate() {
        if l.head_dim == 0 || l.head_dim % 2 != 0 {
            return Err(ModelError::invalid(
                format!("head_dim (layer {i})"),
                format!("{} must be even and > 0", l.head_dim),
            ));
        }
        if l.num_key_value_heads == 0
            || !cfg.num_attention_heads.is_multiple_of(l.num_key_value_heads)
        {
            return Err(ModelError::invalid(
                format!("num_key_value_heads (layer {i})"),
                format!(
                    "{} must divide num_attention_heads {}",
                    l.num_key_value_heads, cfg.num_attention_heads
                ),
            ));
        }
    }
    // A negative or NaN epsilon makes every norm NaN (issue 16: it was blamed on the data).
    if !(cfg.rms_norm_eps.is_finite() && is_positive(cfg.rms_norm_eps)) {
        return Err(ModelError::invalid(
            "rms_norm_eps",
            format!("{} must be finite and > 0 (typically 1e-6)", cfg.rms_norm_eps),
        ));
    }
    if !cfg.attention_scale.is_finite() {
        return Err(ModelError::invalid(
            "query_pre_attn_scalar",
            "must be > 0 (the attention scale is its inverse square root)",
        ));
    }
    if let Some(c) = cfg.final_logit_softcapping
        && !is_positive(c)
    {
        return Err(ModelError::invalid("final_logit_softcapping", "must be > 0 or null"));
    }
    Ok(())
}

/// `x > 0` (false for NaN, so a NaN value is refused).
pub(super) fn is_positive(x: f64) -> bool {
    x > 0.0
}
