//! GGUF v2/v3 base models (llama.cpp's format): header, metadata key/values, tensor table,
//! aligned data section, memory-mapped; tensors are dequantised at load ([`super::quant`]).
//!
//! llama.cpp names map to HF names here ([`hf_name`]), the config comes from the `gemma3.*`
//! metadata as an HF `config.json` ([`config_json`]), and [`crate::Checkpoint`] serves the
//! tensors under their HF names, so `weights::TABLE` stays the one place for names.
//! llama.cpp stores Gemma RMSNorm weights with the `+1` folded in (`convert_hf_to_gguf.py`);
//! we subtract it at load, as transformers' `Gemma2TensorProcessor` does, and the config's
//! `norm_weight_offset` (1 for Gemma 3) adds it back. The binary header is read in `header.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use safetensors::Dtype;

use crate::checkpoint::{Checkpoint, Mapped, Storage, TensorInfo, map_file};
use crate::config::{Gemma4TextConfig, LoadedConfig};
use crate::error::{ModelError, Result};

mod header;
pub(crate) use header::parse;
pub use header::{GgufHeader, GgufTensor, MetaValue};

/// The HF name of a llama.cpp Gemma tensor, and whether it is an RMSNorm weight stored as
/// `1 + w` (llama.cpp folds the Gemma offset in). `None` = not a tensor we know.
pub fn hf_name(name: &str) -> Option<(String, bool)> {
    let top = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some((t.to_owned(), t.ends_with("norm.weight")));
    }
    let rest = name.strip_prefix("blk.")?;
    let (i, rest) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" => "pre_feedforward_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some((format!("model.layers.{i}.{hf}.{suffix}"), hf.ends_with("norm")))
}

fn meta<'a>(h: &'a GgufHeader, key: &str) -> Option<&'a MetaValue> {
    h.metadata.get(key)
}

/// An HF `config.json` (`gemma3_text`) built from the `gemma3.*` metadata, as transformers'
/// GGUF loader does (`integrations/ggml.py`); what GGUF does not store takes HF's Gemma 3
/// defaults (sliding pattern 6, local RoPE base 10 000). `query_pre_attn_scalar` = head dim
/// (llama.cpp; HF's default 256 is the same value for every Gemma 3 size but 27B).
/// `rope.scaling.type/factor` become `rope_scaling` (Gemma 3 4B+).
pub fn config_json(h: &GgufHeader, path: &Path) -> Result<Value> {
    let arch = meta(h, "general.architecture").and_then(MetaValue::as_str).unwrap_or("");
    if arch != "gemma3" {
        return Err(ModelError::Unsupported {
            key: "general.architecture".into(),
            value: format!("{arch:?} (in {})", path.display()),
            hint: Some("GGUF base models: only `gemma3` is supported".into()),
        });
    }
    let u = |k: &str| -> Result<u64> {
        meta(h, &format!("gemma3.{k}")).and_then(MetaValue::as_u64).ok_or_else(|| {
            ModelError::invalid(
                format!("gemma3.{k}"),
                format!("missing from GGUF metadata of {}", path.display()),
            )
        })
    };
    let embd = h.tensors.iter().find(|t| t.name == "token_embd.weight").ok_or_else(|| {
        ModelError::MissingTensor { name: "token_embd.weight".into(), dir: path.to_owned() }
    })?;
    // Rows first (HF order); a 0-dim table is refused, not indexed (a fuzz finding, issue 16).
    let &vocab = embd.shape.first().ok_or_else(|| ModelError::Tensor {
        name: "token_embd.weight".into(),
        reason: format!("in {}: 0 dimensions (expected [vocab, hidden])", path.display()),
    })?;
    let head_dim = u("attention.key_length")?;
    let mut cfg = json!({
        "model_type": "gemma3_text",
        "vocab_size": vocab,
        "hidden_size": u("embedding_length")?,
        "num_hidden_layers": u("block_count")?,
        "intermediate_size": u("feed_forward_length")?,
        "num_attention_heads": u("attention.head_count")?,
        "num_key_value_heads": u("attention.head_count_kv")?,
        "head_dim": head_dim,
        "query_pre_attn_scalar": head_dim,
        "max_position_embeddings": u("context_length")?,
        "tie_word_embeddings": !h.tensors.iter().any(|t| t.name == "output.weight"),
    });
    let o = cfg.as_object_mut().unwrap();
    let f = |k: &str| meta(h, &format!("gemma3.{k}")).and_then(MetaValue::as_f64);
    if let Some(v) = f("attention.layer_norm_rms_epsilon") {
        o.insert("rms_norm_eps".into(), json!(v));
    }
    if let Some(v) = f("rope.freq_base") {
        o.insert("rope_theta".into(), json!(v));
    }
    if let Some(v) = meta(h, "gemma3.attention.sliding_window").and_then(MetaValue::as_u64) {
        o.insert("sliding_window".into(), json!(v));
    }
    if let Some(v) = f("final_logit_softcapping") {
        o.insert("final_logit_softcapping".into(), json!(v));
    }
    if let Some(t) =
        meta(h, "gemma3.rope.scaling.type").and_then(MetaValue::as_str).filter(|t| *t != "none")
    {
        o.insert(
            "rope_scaling".into(),
            json!({"rope_type": t, "factor": f("rope.scaling.factor").unwrap_or(1.0)}),
        );
    }
    for (key, hf) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(v) = meta(h, key).and_then(MetaValue::as_u64) {
            o.insert(hf.into(), json!(v));
        }
    }
    Ok(cfg)
}

impl GgufHeader {
    /// The resolved config its metadata describes (errors name `path` and the metadata key).
    pub fn config(&self, path: &Path) -> Result<LoadedConfig> {
        Gemma4TextConfig::from_json(&config_json(self, path)?).map_err(|e| blame_metadata(e, path))
    }
}

/// The GGUF metadata key each `config.json` key of [`config_json`] comes from.
const GGUF_KEYS: &[(&str, &str)] = &[
    ("hidden_size", "gemma3.embedding_length"),
    ("num_hidden_layers", "gemma3.block_count"),
    ("intermediate_size", "gemma3.feed_forward_length"),
    ("num_attention_heads", "gemma3.attention.head_count"),
    ("num_key_value_heads", "gemma3.attention.head_count_kv"),
    ("head_dim", "gemma3.attention.key_length"),
    ("query_pre_attn_scalar", "gemma3.attention.key_length"),
    ("rms_norm_eps", "gemma3.attention.layer_norm_rms_epsilon"),
    ("sliding_window", "gemma3.attention.sliding_window"),
    ("vocab_size", "token_embd.weight (rows)"),
];

/// A config error of the GGUF file `path`, naming the metadata key its value came from.
pub(crate) fn blame_metadata(e: ModelError, path: &Path) -> ModelError {
    if let ModelError::InvalidConfig { key, reason } = &e
        && let Some((_, gguf)) = GGUF_KEYS.iter().find(|(hf, _)| hf == key)
    {
        let named = ModelError::Input(format!("metadata `{gguf}` (config key `{key}`): {reason}"));
        return ModelError::InFile { path: path.to_owned(), inner: Box::new(named) };
    }
    e.in_file(path)
}

/// Open a GGUF file: the tensors under their HF names, and the HF `config.json` its metadata
/// describes. Tensors of a type we cannot dequantise are an error naming both.
pub(crate) fn open(path: &Path) -> Result<(Checkpoint, Value)> {
    let map = map_file(path)?;
    let header = parse(&map, path)?;
    let config = config_json(&header, path)?;
    let (mut tensors, mut types) = (BTreeMap::new(), BTreeMap::new());
    for t in header.tensors {
        let (name, is_norm) = hf_name(&t.name).ok_or_else(|| ModelError::Tensor {
            name: t.name.clone(),
            reason: format!("in {}: no HF name for this llama.cpp tensor", path.display()),
        })?;
        let ty = t.ggml_type.map_err(|ty| ModelError::Tensor {
            name: t.name.clone(),
            reason: format!(
                "type {ty} cannot be dequantised (supported: F32, F16, BF16, Q4_0, Q5_0, Q8_0, \
                 Q4_K, Q5_K, Q6_K)"
            ),
        })?;
        let info =
            TensorInfo { dtype: Dtype::F32, shape: t.shape, file: 0, start: t.start, end: t.end };
        if tensors.insert(name.clone(), info).is_some() {
            return Err(ModelError::Tensor {
                name,
                reason: format!("stored twice in {}", path.display()),
            });
        }
        types.insert(name, (ty, is_norm));
    }
    let storage = Storage::Gguf { file: Mapped { path: path.to_owned(), map }, types };
    Ok((Checkpoint::from_parts(path.to_owned(), tensors, storage), config))
}

/// The `.gguf` file a model path names: the path itself, or the only `.gguf` in a directory.
pub fn find_gguf(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(path.extension().is_some_and(|e| e == "gguf").then(|| path.to_owned()));
    }
    let Ok(entries) = std::fs::read_dir(path) else { return Ok(None) };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ModelError::Input(format!(
            "{}: several .gguf files ({}); pass one with --model FILE.gguf",
            path.display(),
            found
                .iter()
                .map(|p| p
                    .file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_names_map_to_hf_names() {
        assert_eq!(hf_name("token_embd.weight"), Some(("model.embed_tokens.weight".into(), false)));
        assert_eq!(hf_name("output_norm.weight"), Some(("model.norm.weight".into(), true)));
        assert_eq!(
            hf_name("blk.12.attn_q.weight"),
            Some(("model.layers.12.self_attn.q_proj.weight".into(), false))
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight"),
            Some(("model.layers.0.pre_feedforward_layernorm.weight".into(), true))
        );
        assert_eq!(
            hf_name("blk.3.post_ffw_norm.weight"),
            Some(("model.layers.3.post_feedforward_layernorm.weight".into(), true))
        );
        assert_eq!(
            hf_name("blk.3.attn_k_norm.weight"),
            Some(("model.layers.3.self_attn.k_norm.weight".into(), true))
        );
        assert_eq!(
            hf_name("blk.3.ffn_down.weight"),
            Some(("model.layers.3.mlp.down_proj.weight".into(), false))
        );
        assert_eq!(
            hf_name("blk.3.attn_output.weight"),
            Some(("model.layers.3.self_attn.o_proj.weight".into(), false))
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }
}
