//! A whole output directory built beside its destination and renamed into place when complete,
//! so an error or a kill never leaves a half-written `<out>`:
//!
//! 1. [`StagedDir::begin`] creates `.<out>.tmp-XXXXXX` next to `<out>`; the caller writes into
//!    [`StagedDir::path`].
//! 2. [`StagedDir::commit`] renames it to `<out>`. An existing `<out>` is first moved aside to
//!    `.<out>.old-XXXXXX`, put back if the rename fails, and removed after it succeeds.
//! 3. Dropped uncommitted (an error on the way), the staging directory is removed.
//!
//! A kill between the two renames of step 2 leaves `<out>` missing and `.<out>.old-XXXXXX`
//! present: [`crate::recover`] puts it back.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::atomic::sync_parent;
use crate::error::{Result, StoreError};
use crate::naming;

/// A directory being built for `out`; removed on drop unless committed.
#[derive(Debug)]
pub struct StagedDir {
    out: PathBuf,
    dir: TempDir,
}

impl StagedDir {
    /// Create the staging directory beside `out` (and `out`'s parent directories if missing).
    pub fn begin(out: &Path) -> Result<Self> {
        let (parent, name) = naming::split(out)?;
        // Only when missing: for a parent that is a file, "Not a directory" (from creating the
        // staging directory) says more than create_dir_all's "File exists".
        if !parent.exists() {
            std::fs::create_dir_all(&parent).map_err(StoreError::io(&parent))?;
        }
        let dir = tempfile::Builder::new()
            .prefix(&naming::temp_prefix(&name))
            .rand_bytes(naming::RAND_LEN)
            .tempdir_in(&parent)
            .map_err(StoreError::io(out))?;
        Ok(Self { out: out.to_owned(), dir })
    }

    /// The staging directory to write into.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The destination.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Put the staging directory in place at `out` (see the module docs).
    pub fn commit(self) -> Result<()> {
        let Self { out, dir } = self;
        let io = |source| StoreError::Io { path: out.clone(), source };
        if std::fs::symlink_metadata(&out).is_err() {
            std::fs::rename(dir.path(), &out).map_err(io)?;
            let _ = dir.keep(); // renamed: nothing left to clean up
            sync_parent(&out);
            return Ok(());
        }
        let (_, name) = naming::split(&out)?;
        let aside = naming::aside_of(&name, dir.path());
        std::fs::rename(&out, &aside).map_err(io)?;
        if let Err(source) = std::fs::rename(dir.path(), &out) {
            let _ = std::fs::rename(&aside, &out);
            return Err(io(source)); // `dir` drops: the staging directory goes
        }
        let _ = dir.keep();
        sync_parent(&out);
        // The new `out` is in place: a failure to remove the old one is not the caller's
        // error (recovery removes it later).
        let _ = if aside.is_dir() {
            std::fs::remove_dir_all(&aside)
        } else {
            std::fs::remove_file(&aside)
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::names;

    #[test]
    fn a_commit_puts_a_new_directory_in_place() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("runs/adapter");
        let stage = StagedDir::begin(&out).unwrap();
        assert!(names(&parent.path().join("runs"))[0].starts_with(".adapter.tmp-"));
        std::fs::write(stage.path().join("a.json"), "new").unwrap();
        stage.commit().unwrap();
        assert_eq!(names(&out), ["a.json"]);
        assert_eq!(names(&parent.path().join("runs")), ["adapter"]);
    }

    #[test]
    fn a_commit_replaces_an_existing_directory() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("adapter");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("old.txt"), "old").unwrap();
        let stage = StagedDir::begin(&out).unwrap();
        std::fs::write(stage.path().join("a.json"), "new").unwrap();
        stage.commit().unwrap();
        assert_eq!(names(&out), ["a.json"]);
        assert_eq!(names(parent.path()), ["adapter"]);
    }

    #[test]
    fn an_uncommitted_stage_leaves_nothing_and_the_old_directory_as_it_was() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("adapter");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("old.txt"), "old").unwrap();
        let stage = StagedDir::begin(&out).unwrap();
        std::fs::write(stage.path().join("a.json"), "half").unwrap();
        drop(stage); // an error on the way
        assert_eq!(names(parent.path()), ["adapter"]);
        assert_eq!(names(&out), ["old.txt"]);
    }

    #[test]
    fn a_parent_that_is_a_file_is_an_error_naming_the_output() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("checkpoints"), "a file").unwrap();
        let out = parent.path().join("checkpoints/0000003");
        let e = StagedDir::begin(&out).unwrap_err().to_string();
        assert!(e.contains("checkpoints/0000003") && e.contains("Not a directory"), "{e}");
    }
}
