//! An output directory built beside its destination (`<out>.tmp-<pid>`) and renamed into place
//! only when complete, so an error or a kill never leaves a half-written `<out>`.

use std::path::{Path, PathBuf};

use crate::error::{LoraError, Result};

/// `<out>.tmp-<pid>`: removed on drop unless committed.
pub(crate) struct Staging {
    pub(crate) dir: PathBuf,
    committed: bool,
}

impl Staging {
    pub(crate) fn begin(out: &Path) -> Result<Self> {
        let dir = sibling(out, "tmp");
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?; // left by a killed run with our pid
        }
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(Self { dir, committed: false })
    }

    /// Rename into place; an existing `out` (empty, or `--force`) is moved aside first and
    /// restored if the rename fails.
    pub(crate) fn commit(mut self, out: &Path) -> Result<()> {
        if out.exists() {
            let old = sibling(out, "old");
            std::fs::rename(out, &old).map_err(io(out))?;
            if let Err(source) = std::fs::rename(&self.dir, out) {
                let _ = std::fs::rename(&old, out);
                return Err(LoraError::Io { path: out.to_owned(), source });
            }
            self.committed = true;
            std::fs::remove_dir_all(&old).map_err(io(&old))
        } else {
            std::fs::rename(&self.dir, out).map_err(io(out))?;
            self.committed = true;
            Ok(())
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An I/O error at `path`, for `map_err`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoraError {
    let path = path.to_owned();
    move |source| LoraError::Io { path, source }
}

/// `<out>.<tag>-<pid>` next to `out`.
fn sibling(out: &Path, tag: &str) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{name}.{tag}-{}", std::process::id()))
}
