//! The model crate's one error type. Every variant carries the facts a user needs to fix the
//! input: the file, the config key, the tensor name, expected and found shapes.

use std::path::PathBuf;

/// Everything that can go wrong while reading a config or a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("config key `{key}`: {reason}")]
    InvalidConfig { key: String, reason: String },

    #[error("config key `{key}` = {value} is not supported{}", hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Unsupported { key: String, value: String, hint: Option<String> },

    #[error("{path}: not a readable safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    #[error("{path}: not a readable GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },

    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },

    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("tensor {name} is missing from the checkpoint in {dir}")]
    MissingTensor { name: String, dir: PathBuf },

    #[error("checkpoint in {dir} has {count} tensor(s) the model does not use: {names}")]
    UnusedTensors { dir: PathBuf, count: usize, names: String },

    #[error("{0}")]
    Input(String),

    /// An error in a config read from `path` (`config.json`, or a GGUF file's metadata).
    #[error("{path}: {inner}")]
    InFile { path: PathBuf, inner: Box<ModelError> },
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig { key: key.into(), reason: reason.into() }
    }
    /// This error, as found in the file `path` (kept as it is if it already names a file).
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            e @ (Self::InvalidConfig { .. } | Self::Unsupported { .. }) => {
                Self::InFile { path: path.to_owned(), inner: Box::new(e) }
            }
            e => e,
        }
    }
    pub(crate) fn unsupported(key: impl Into<String>, value: impl std::fmt::Display) -> Self {
        Self::Unsupported { key: key.into(), value: value.to_string(), hint: None }
    }
}
