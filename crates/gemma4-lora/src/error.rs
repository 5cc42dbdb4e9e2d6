//! The LoRA crate's error type: every variant names the file, key or tensor at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Adapter { path: PathBuf, reason: String },
    #[error("LoRA targets: {0}")]
    Target(String),
    #[error(transparent)]
    Model(#[from] gemma4_model::ModelError),
    /// A write that failed (it names the path; nothing partial is left).
    #[error(transparent)]
    Store(#[from] gemma4_store::StoreError),
}

pub type Result<T> = std::result::Result<T, LoraError>;

/// serde's error about `text`, naming the key it is about (found by reading each key alone:
/// every field of `T` has a default), so a mistyped value names its key (issue 16).
pub(crate) fn name_bad_key<T: serde::de::DeserializeOwned>(
    text: &str,
    e: &serde_json::Error,
) -> String {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(text) else {
        return e.to_string();
    };
    obj.into_iter()
        .find_map(|(k, v)| {
            let one = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<T>(one).err().map(|e| format!("`{k}` = {v}: {e}"))
        })
        .unwrap_or_else(|| e.to_string())
}
