//! The fused checkpoint's other files: `model.safetensors.index.json` for sharded output, the
//! side files copied from the base (config.json with the new dtype when one is requested), and
//! the JSON/I-O helpers they share.

use std::path::Path;

use gemma4_model::{INDEX_FILE, WeightDtype};
use gemma4_store::write_atomic;

use super::plan::Planned;
use crate::error::{LoraError, Result};

/// Files besides the weights that are copied when present (config.json is required).
pub const SIDE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
];

/// `model.safetensors.index.json` as `save_pretrained` writes it.
pub(super) fn write_index(
    dir: &Path,
    shards: &[&[Planned]],
    names: &[String],
    total_size: u64,
) -> Result<()> {
    let mut weight_map = serde_json::Map::new();
    let mut params = 0u64;
    for (shard, file) in shards.iter().zip(names) {
        for p in shard.iter() {
            weight_map.insert(p.spec.name.clone(), file.clone().into());
            params += p.spec.shape.iter().product::<usize>() as u64;
        }
    }
    let index = serde_json::json!({
        "metadata": { "total_parameters": params, "total_size": total_size },
        "weight_map": weight_map,
    });
    write_json(&dir.join(INDEX_FILE), &index)
}

/// Copy the side files present in `base`; config.json gets the new dtype when one is requested.
pub(super) fn copy_side_files(
    base: &Path,
    dir: &Path,
    dtype: Option<WeightDtype>,
) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in SIDE_FILES {
        let (from, to) = (base.join(name), dir.join(name));
        if !from.is_file() {
            continue;
        }
        match dtype {
            Some(d) if *name == "config.json" => {
                write_json(&to, &config_with_dtype(&from, d.hf_name())?)?
            }
            _ => {
                std::fs::copy(&from, &to).map_err(io(&from))?;
            }
        }
        copied.push(name.to_string());
    }
    Ok(copied)
}

/// config.json with `dtype`/`torch_dtype` set to `hf` at the top level and in every sub-config
/// that carries one (`text_config`, `vision_config`, ...).
fn config_with_dtype(path: &Path, hf: &str) -> Result<serde_json::Value> {
    let err = |reason: String| LoraError::Config { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let top = json.as_object_mut().ok_or_else(|| err("not a JSON object".into()))?;
    if !top.contains_key("dtype") && !top.contains_key("torch_dtype") {
        top.insert("dtype".into(), hf.into());
    }
    let set = |obj: &mut serde_json::Map<String, serde_json::Value>| {
        for key in ["dtype", "torch_dtype"] {
            if let Some(v) = obj.get_mut(key) {
                *v = hf.into();
            }
        }
    };
    set(top);
    top.values_mut().filter_map(serde_json::Value::as_object_mut).for_each(set);
    Ok(json)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| LoraError::Config { path: path.to_owned(), reason: e.to_string() })?;
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

/// An I/O error at `path`, for `map_err`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoraError {
    let path = path.to_owned();
    move |source| LoraError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dtype_is_rewritten_at_top_level_and_in_sub_configs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"dtype":"float32","text_config":{"dtype":"float32","hidden_size":8},"vision_config":{"torch_dtype":"float32"}}"#).unwrap();
        let json = config_with_dtype(&path, "bfloat16").unwrap();
        assert_eq!(json["dtype"], "bfloat16");
        assert_eq!(json["text_config"]["dtype"], "bfloat16");
        assert_eq!(json["text_config"]["hidden_size"], 8);
        assert_eq!(json["vision_config"]["torch_dtype"], "bfloat16");
    }
}
