//! The trainer's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("recipe {path}: {reason}")]
    Recipe { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Run(String),
    #[error(transparent)]
    Model(#[from] gemma4_model::ModelError),
    #[error(transparent)]
    Lora(#[from] gemma4_lora::LoraError),
    #[error(transparent)]
    Data(#[from] gemma4_data::DataError),
    /// A write that failed (it names the path; nothing partial is left).
    #[error(transparent)]
    Store(#[from] gemma4_store::StoreError),
}

pub type Result<T> = std::result::Result<T, TrainError>;
