//! THE weight-name table: every HF tensor name the text decoder reads is a row of [`TABLE`]
//! (names below the text prefix, `{i}` = layer index) with the one transform applied to it. Our
//! module fields carry the HF names, so the module path is the row's name. [`DROPPED`] lists
//! what a checkpoint may carry that the text decoder deliberately ignores (vision/audio towers,
//! the K/V of KV-shared layers that early exports stored).
//!
//! Prefixes (spec §7.1): multimodal `model.language_model.`, text-only `model.`; `lm_head.weight`
//! (untied heads only) sits at the root in both.

use crate::config::Gemma4TextConfig;

/// How a checkpoint tensor becomes a model tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// As stored.
    Keep,
    /// Linear weight `[out, in]` → `[in, out]` (so the forward is `x·W`).
    Transpose,
    /// Stacked expert weights `[E, out, in]` → `[E, in, out]`.
    TransposeExperts,
    /// Stays in the mapped file; rows are gathered on the host per batch (the PLE table).
    Host,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Name below the text prefix (`{i}` = layer index), or at the root for `lm_head.weight`.
    pub name: &'static str,
    pub transform: Transform,
}

const fn row(name: &'static str, transform: Transform) -> Row {
    Row { name, transform }
}

use Transform::{Host, Keep, Transpose, TransposeExperts};

/// Every tensor the text decoder reads. HF `modeling_gemma4.py` names, verbatim.
pub const TABLE: &[Row] = &[
    row("embed_tokens.weight", Keep),
    row("embed_tokens_per_layer.weight", Host),
    row("per_layer_model_projection.weight", Transpose),
    row("per_layer_projection_norm.weight", Keep),
    row("norm.weight", Keep),
    row("lm_head.weight", Transpose),
    row("layers.{i}.input_layernorm.weight", Keep),
    row("layers.{i}.post_attention_layernorm.weight", Keep),
    row("layers.{i}.pre_feedforward_layernorm.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm.weight", Keep),
    row("layers.{i}.layer_scalar", Keep),
    row("layers.{i}.self_attn.q_proj.weight", Transpose),
    row("layers.{i}.self_attn.q_proj.bias", Keep),
    row("layers.{i}.self_attn.k_proj.weight", Transpose),
    row("layers.{i}.self_attn.k_proj.bias", Keep),
    row("layers.{i}.self_attn.v_proj.weight", Transpose),
    row("layers.{i}.self_attn.v_proj.bias", Keep),
    row("layers.{i}.self_attn.o_proj.weight", Transpose),
    row("layers.{i}.self_attn.o_proj.bias", Keep),
    row("layers.{i}.self_attn.q_norm.weight", Keep),
    row("layers.{i}.self_attn.k_norm.weight", Keep),
    row("layers.{i}.mlp.gate_proj.weight", Transpose),
    row("layers.{i}.mlp.up_proj.weight", Transpose),
    row("layers.{i}.mlp.down_proj.weight", Transpose),
    row("layers.{i}.per_layer_input_gate.weight", Transpose),
    row("layers.{i}.per_layer_projection.weight", Transpose),
    row("layers.{i}.post_per_layer_input_norm.weight", Keep),
    row("layers.{i}.router.proj.weight", Transpose),
    row("layers.{i}.router.scale", Keep),
    row("layers.{i}.router.per_expert_scale", Keep),
    row("layers.{i}.experts.gate_up_proj", TransposeExperts),
    row("layers.{i}.experts.down_proj", TransposeExperts),
    row("layers.{i}.pre_feedforward_layernorm_2.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm_1.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm_2.weight", Keep),
];

/// Root-level name prefixes of the multimodal towers (mlx-lm `sanitize`, HF `Gemma4Model`).
pub const DROPPED: &[&str] = &[
    "model.vision_tower.",
    "model.audio_tower.",
    "model.embed_vision.",
    "model.embed_audio.",
    "model.multi_modal_projector.",
    "model.vision_embedder.",
];

/// Modules of KV-shared layers that early exports stored and the model never reads
/// (HF `_keys_to_ignore_on_load_unexpected`, mlx-lm #1240).
pub const DROPPED_IN_SHARED_LAYERS: &[&str] =
    &["self_attn.k_proj.", "self_attn.v_proj.", "self_attn.k_norm.", "self_attn.v_norm."];

/// Every tensor a checkpoint for `cfg` holds (text decoder only), with its HF shape, under
/// `prefix` (`model.` or `model.language_model.`). Used to write new checkpoints (the built-in
/// tiny model) and to check real layouts; the loader's requests must agree (tested).
pub fn expected_tensors(cfg: &Gemma4TextConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    let (v, e, l, d) =
        (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.hidden_size_per_layer_input);
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
    push(format!("{prefix}embed_tokens.weight"), vec![v, e]);
    if d > 0 {
        push(
            format!("{prefix}embed_tokens_per_layer.weight"),
            vec![cfg.vocab_size_per_layer_input, l * d],
        );
        push(format!("{prefix}per_layer_model_projection.weight"), vec![l * d, e]);
        push(format!("{prefix}per_layer_projection_norm.weight"), vec![d]);
    }
    push(format!("{prefix}norm.weight"), vec![e]);
    if !cfg.tie_word_embeddings {
        push("lm_head.weight".into(), vec![v, e]);
    }
    for (i, spec) in cfg.layers.iter().enumerate() {
        let p = format!("{prefix}layers.{i}.");
        let (h, hd, kv, m) = (
            cfg.num_attention_heads,
            spec.head_dim,
            spec.num_key_value_heads,
            spec.intermediate_size,
        );
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            push(format!("{p}{norm}.weight"), vec![e]);
        }
        if cfg.layer_scalar {
            push(format!("{p}layer_scalar"), vec![1]);
        }
        let mut proj = |name: &str, out_f: usize, in_f: usize| {
            push(format!("{p}self_attn.{name}.weight"), vec![out_f, in_f]);
            if cfg.attention_bias {
                push(format!("{p}self_attn.{name}.bias"), vec![out_f]);
            }
        };
        proj("q_proj", h * hd, e);
        if spec.kv_donor.is_none() {
            proj("k_proj", kv * hd, e);
            if !spec.k_eq_v {
                proj("v_proj", kv * hd, e);
            }
        }
        proj("o_proj", e, h * hd);
        push(format!("{p}self_attn.q_norm.weight"), vec![hd]);
        if spec.kv_donor.is_none() {
            push(format!("{p}self_attn.k_norm.weight"), vec![hd]);
        }
        push(format!("{p}mlp.gate_proj.weight"), vec![m, e]);
        push(format!("{p}mlp.up_proj.weight"), vec![m, e]);
        push(format!("{p}mlp.down_proj.weight"), vec![e, m]);
        if d > 0 {
            push(format!("{p}per_layer_input_gate.weight"), vec![d, e]);
            push(format!("{p}per_layer_projection.weight"), vec![e, d]);
            push(format!("{p}post_per_layer_input_norm.weight"), vec![e]);
        }
        if cfg.enable_moe_block {
            push_moe_tensors(cfg, &p, &mut push);
        }
    }
    out
}

/// The MoE block of one layer (`p` = `{prefix}layers.{i}.`): router, stacked experts and the
/// block's extra norms, in [`expected_tensors`]' order.
fn push_moe_tensors(cfg: &Gemma4TextConfig, p: &str, push: &mut impl FnMut(String, Vec<usize>)) {
    let (n, mi, e) = (cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size);
    push(format!("{p}router.proj.weight"), vec![n, e]);
    push(format!("{p}router.scale"), vec![e]);
    push(format!("{p}router.per_expert_scale"), vec![n]);
    push(format!("{p}experts.gate_up_proj"), vec![n, 2 * mi, e]);
    push(format!("{p}experts.down_proj"), vec![n, e, mi]);
    for norm in [
        "pre_feedforward_layernorm_2",
        "post_feedforward_layernorm_1",
        "post_feedforward_layernorm_2",
    ] {
        push(format!("{p}{norm}.weight"), vec![e]);
    }
}

/// How a checkpoint name is handled: `Some(row)` = read through that table row,
/// `None` = dropped by a rule. Names neither read nor dropped give `Err`.
/// `shared_from`: index of the first KV-shared layer.
pub fn classify(
    name: &str,
    prefix: &str,
    shared_from: usize,
    tied: bool,
) -> std::result::Result<Option<Row>, String> {
    if name == "lm_head.weight" {
        return Ok(if tied { None } else { Some(table_row(name)) });
    }
    if DROPPED.iter().any(|p| name.starts_with(p)) || name.contains(".self_attn.rotary_emb.") {
        return Ok(None);
    }
    let local = name
        .strip_prefix(prefix)
        .ok_or_else(|| format!("{name}: not under the text prefix {prefix}"))?;
    let mut parts = local.splitn(3, '.');
    let pattern = match (parts.next(), parts.next(), parts.next()) {
        (Some("layers"), Some(i), Some(rest)) => {
            let layer: usize = i.parse().map_err(|_| format!("{name}: bad layer index"))?;
            if layer >= shared_from && DROPPED_IN_SHARED_LAYERS.iter().any(|m| rest.starts_with(m))
            {
                return Ok(None);
            }
            format!("layers.{{i}}.{rest}")
        }
        _ => local.to_owned(),
    };
    TABLE
        .iter()
        .find(|r| r.name == pattern)
        .map(|r| Some(*r))
        .ok_or_else(|| format!("{name}: no row in the weight table"))
}

/// The row for a table name (an internal invariant: the model asks only for table names).
pub fn table_row(name: &str) -> Row {
    match TABLE.iter().find(|r| r.name == name) {
        Some(r) => *r,
        None => panic!("weight `{name}` is not in weights::TABLE"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn table_names_are_unique_and_transforms_match_kinds() {
        let mut seen = BTreeSet::new();
        for r in TABLE {
            assert!(seen.insert(r.name), "duplicate row {}", r.name);
            let linear = r.name.ends_with("_proj.weight")
                || r.name.ends_with("gate.weight")
                || r.name == "lm_head.weight";
            if linear && !r.name.starts_with("embed") {
                assert_eq!(r.transform, Transform::Transpose, "{}", r.name);
            }
            if r.name.contains("norm") || r.name.ends_with(".bias") || r.name.ends_with("scale") {
                assert_eq!(r.transform, Transform::Keep, "{}", r.name);
            }
        }
    }
}
