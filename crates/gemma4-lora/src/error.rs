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
