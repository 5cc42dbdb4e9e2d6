//! One file written whole or not at all: the bytes go to a temporary `.<name>.tmp-XXXXXX` in
//! the destination's directory (made by `tempfile`), are synced to disk, and the temporary is
//! renamed over the destination (`tempfile`'s `persist`). A reader sees the old file or the new
//! one, never a part; on an error the temporary is removed and an existing file stays as it was.
//!
//! The destination's directory must exist. Files get the permissions `std::fs::write` gives
//! (0o666 less the umask), not `tempfile`'s private 0o600.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Result, StoreError};
use crate::naming;

/// Write `bytes` to `path`: afterwards `path` holds exactly `bytes`, or (on an error) what it
/// held before.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(StoreError::io(path))?;
    file.commit()
}

/// Stream a file to `path` through `write`: the file appears only if `write` returns `Ok`.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut AtomicFile) -> std::io::Result<()>,
{
    let mut file = AtomicFile::create(path)?;
    write(&mut file).map_err(StoreError::io(path))?;
    file.commit()
}

/// A file being written: a buffered temporary beside its destination. [`commit`](Self::commit)
/// puts it in place; dropping it uncommitted removes the temporary.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    file: BufWriter<NamedTempFile>,
}

impl AtomicFile {
    /// Start writing `path` (its directory must exist).
    pub fn create(path: &Path) -> Result<Self> {
        let (dir, name) = naming::split(path)?;
        let mut builder = tempfile::Builder::new();
        let prefix = naming::temp_prefix(&name);
        builder.prefix(&prefix).rand_bytes(naming::RAND_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let file = builder.tempfile_in(dir).map_err(StoreError::io(path))?;
        Ok(Self { path: path.to_owned(), file: BufWriter::with_capacity(1 << 20, file) })
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush, sync and rename the temporary over the destination.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        let io = |source| StoreError::Io { path: path.clone(), source };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.as_file().sync_all().map_err(io)?;
        // On failure the `PersistError` still owns the temporary, and dropping it removes it.
        file.persist(&path).map_err(|e| io(e.error))?;
        sync_parent(&path);
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Make a rename in `path`'s directory durable (best effort: not every platform can open a
/// directory, and the data itself is already synced).
pub(crate) fn sync_parent(path: &Path) {
    if let Ok((dir, _)) = naming::split(path)
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::names;

    #[test]
    fn an_atomic_write_replaces_an_existing_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        write_atomic_with(&path, |w| w.write_all(b"streamed")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "streamed");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn an_error_leaves_the_old_file_intact_and_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        let e = write_atomic_with(&path, |w| {
            w.write_all(b"half of it")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("state.json") && e.to_string().contains("disk full"), "{e}");
        // Dropped uncommitted: the same.
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"never committed").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/o.safetensors");
        let e = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(e.contains("no/such/dir/o.safetensors") && e.contains("No such file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_permissions_of_fs_write_not_private_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (ours, std_) = (dir.path().join("a"), dir.path().join("b"));
        write_atomic(&ours, b"x").unwrap();
        std::fs::write(&std_, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&ours), mode(&std_));
    }
}
