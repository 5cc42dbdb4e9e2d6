//! The `{arch}.*` metadata keys of a Gemma 3 / Gemma 4 export, typed as llama.cpp reads them
//! (`src/llama-model.cpp` `load_hparams`, `src/models/gemma{3,4}.cpp`; key names from
//! `src/llama-arch.cpp` `LLM_KV_NAMES`). Per-layer values become arrays only where they differ.

use super::GgufValue;
use crate::config::{Gemma4TextConfig, LayerType, RopeConfig};
use crate::error::{ModelError, Result};

fn u32_of(v: usize, key: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| ModelError::invalid(key.to_owned(), format!("{v} > u32::MAX")))
}

/// A per-layer count: one u32, or an array where layers differ.
fn per_layer(values: &[usize], key: &str) -> Result<GgufValue> {
    let v: Vec<u32> = values.iter().map(|&x| u32_of(x, key)).collect::<Result<_>>()?;
    Ok(match v.first() {
        Some(&first) if v.iter().all(|&x| x == first) => GgufValue::U32(first),
        _ => GgufValue::ArrU32(v),
    })
}

/// The head dim of full-attention layers (the sliding one where there is none).
pub(super) fn full_head_dim(cfg: &Gemma4TextConfig) -> usize {
    head_dim_of(cfg, LayerType::Full)
}

fn head_dim_of(cfg: &Gemma4TextConfig, t: LayerType) -> usize {
    cfg.layers.iter().find(|l| l.layer_type == t).map_or(cfg.head_dim, |l| l.head_dim)
}

fn unsupported(key: &str, value: impl ToString, why: &str) -> ModelError {
    ModelError::Unsupported {
        key: key.into(),
        value: value.to_string(),
        hint: Some(format!("llama.cpp cannot represent this: {why}")),
    }
}

/// RoPE of one layer type: `(theta, factor)`, refusing what llama.cpp's NeoX RoPE lacks.
fn rope(cfg: &Gemma4TextConfig, t: LayerType, arch: &str) -> Result<(f64, f64)> {
    let default = RopeConfig {
        rope_type: "default".into(),
        rope_theta: 10_000.0,
        partial_rotary_factor: 1.0,
        factor: 1.0,
    };
    let r = cfg.rope_parameters.get(&t).unwrap_or(&default);
    let key = format!("rope_parameters.{}", t.hf_name());
    let proportional = arch == "gemma4" && t == LayerType::Full;
    if !proportional && r.partial_rotary_factor != 1.0 {
        return Err(unsupported(&key, r.partial_rotary_factor, "partial RoPE here"));
    }
    if t == LayerType::Sliding && r.factor != 1.0 {
        return Err(unsupported(&key, r.factor, "no RoPE scaling on sliding layers"));
    }
    Ok((r.rope_theta, r.factor))
}

/// The architecture keys (`gemma3.*` / `gemma4.*`) of `cfg`.
pub(super) fn hparams(cfg: &Gemma4TextConfig, arch: &str) -> Result<Vec<(String, GgufValue)>> {
    let k = |s: &str| format!("{arch}.{s}");
    let layers = &cfg.layers;
    let mut m = vec![
        (
            k("context_length"),
            GgufValue::U32(u32_of(
                cfg.max_position_embeddings.unwrap_or(131_072),
                "max_position_embeddings",
            )?),
        ),
        (k("embedding_length"), GgufValue::U32(u32_of(cfg.hidden_size, "hidden_size")?)),
        (k("block_count"), GgufValue::U32(u32_of(cfg.num_hidden_layers, "num_hidden_layers")?)),
        (
            k("feed_forward_length"),
            per_layer(
                &layers.iter().map(|l| l.intermediate_size).collect::<Vec<_>>(),
                "intermediate_size",
            )?,
        ),
        (
            k("attention.head_count"),
            GgufValue::U32(u32_of(cfg.num_attention_heads, "num_attention_heads")?),
        ),
        (
            k("attention.head_count_kv"),
            per_layer(
                &layers.iter().map(|l| l.num_key_value_heads).collect::<Vec<_>>(),
                "num_key_value_heads",
            )?,
        ),
        (k("attention.layer_norm_rms_epsilon"), GgufValue::F32(cfg.rms_norm_eps as f32)),
        (k("attention.key_length"), GgufValue::U32(u32_of(full_head_dim(cfg), "head_dim")?)),
        (k("attention.value_length"), GgufValue::U32(u32_of(full_head_dim(cfg), "head_dim")?)),
        (
            k("attention.sliding_window"),
            GgufValue::U32(u32_of(cfg.sliding_window, "sliding_window")?),
        ),
        (
            k("attention.sliding_window_pattern"),
            GgufValue::ArrBool(layers.iter().map(|l| l.layer_type == LayerType::Sliding).collect()),
        ),
    ];
    let (full_theta, factor) = rope(cfg, LayerType::Full, arch)?;
    let (swa_theta, _) = rope(cfg, LayerType::Sliding, arch)?;
    m.push((k("rope.freq_base"), GgufValue::F32(full_theta as f32)));
    m.push((k("rope.freq_base_swa"), GgufValue::F32(swa_theta as f32)));
    if factor != 1.0 {
        m.push((k("rope.scaling.type"), GgufValue::Str("linear".into())));
        m.push((k("rope.scaling.factor"), GgufValue::F32(factor as f32)));
    }
    if let Some(cap) = cfg.final_logit_softcapping {
        m.push((k("final_logit_softcapping"), GgufValue::F32(cap as f32)));
    }
    if arch == "gemma4" {
        m.extend(gemma4_keys(cfg, &k)?);
    } else if layers.iter().any(|l| l.head_dim != cfg.head_dim || l.kv_donor.is_some()) {
        return Err(unsupported(
            "per_layer_config",
            "head dims / KV sharing",
            "gemma3 has neither",
        ));
    }
    Ok(m)
}

/// What only `gemma4` reads: SWA head dims, RoPE dims, KV sharing, PLE width.
fn gemma4_keys(
    cfg: &Gemma4TextConfig,
    k: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, GgufValue)>> {
    let swa = head_dim_of(cfg, LayerType::Sliding);
    // llama.cpp's KV sharing (`llama-model.cpp`, the iSWA cache's reuse callback): a shared
    // layer reads layer `first_shared − 2` if sliding, `first_shared − 1` if full.
    let first = cfg.first_kv_shared_layer();
    for (i, l) in cfg.layers.iter().enumerate() {
        let want = first.checked_sub(if l.layer_type == LayerType::Sliding { 2 } else { 1 });
        if let Some(donor) = l.kv_donor
            && Some(donor) != want
        {
            return Err(unsupported(
                "num_kv_shared_layers",
                format!("layer {i} reads the K/V of layer {donor}"),
                &format!(
                    "llama.cpp's gemma4 reads layer {} there (the last two layers before the \
                     shared ones must be sliding, then full)",
                    want.map_or_else(|| "none".into(), |w| w.to_string())
                ),
            ));
        }
    }
    Ok(vec![
        (k("attention.key_length_swa"), GgufValue::U32(u32_of(swa, "head_dim")?)),
        (k("attention.value_length_swa"), GgufValue::U32(u32_of(swa, "head_dim")?)),
        // Full layers rotate every pair, the unrotated ones by a 1e30 divisor (`rope_freqs`).
        (k("rope.dimension_count"), GgufValue::U32(u32_of(full_head_dim(cfg), "head_dim")?)),
        (k("rope.dimension_count_swa"), GgufValue::U32(u32_of(swa, "head_dim")?)),
        (
            k("attention.shared_kv_layers"),
            GgufValue::U32(u32_of(cfg.num_kv_shared_layers, "num_kv_shared_layers")?),
        ),
        (
            k("embedding_length_per_layer_input"),
            GgufValue::U32(u32_of(cfg.hidden_size_per_layer_input, "hidden_size_per_layer_input")?),
        ),
    ])
}
