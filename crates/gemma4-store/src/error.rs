//! The store's error type: every variant names the path at fault (the destination, not the
//! temporary, unless the temporary itself is the problem).

use std::path::PathBuf;

/// A failed write, naming its destination.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system refused (no such directory, disk full, not a directory, ...).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A safetensors file that cannot be written as asked (bad header, tensor data out of
    /// order or of the wrong size); `reason` names the tensor.
    #[error("{path}: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// An output that is, or resolves to, a file the command reads: writing it would destroy
    /// that input.
    #[error(
        "{path}: refusing to write over an input of this command ({input}); choose another path"
    )]
    OverwritesInput { path: PathBuf, input: PathBuf },
    /// A destination without a file name (`/`, `..`): nothing to name a temporary after.
    #[error("{path}: not a file or directory name")]
    NoFileName { path: PathBuf },
}

impl StoreError {
    /// An I/O error at `path`, for `map_err`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { path, source }
    }
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;
