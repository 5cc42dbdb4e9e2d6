//! Recovery of a directory after a crash: what a killed process left there among the store's
//! temporaries (see `naming`) is cleaned up, so the directory holds complete outputs only.
//!
//! - `.<name>.tmp-XXXXXX` (a file or directory being written, never complete) is removed;
//! - `.<name>.old-XXXXXX` (the previous `<name>`, moved aside by [`crate::StagedDir::commit`]
//!   just before its replacement was renamed in) is put back if `<name>` is missing, else
//!   removed.
//!
//! Call it before writing into the directory again, while no other process writes there: an
//! in-flight temporary of another writer looks the same as a dead one.

use std::path::Path;

use crate::naming::{self, Leftover};

/// Clean up the leftovers of interrupted writes in `dir` (not its subdirectories). Best effort:
/// an unreadable directory or an entry that cannot be removed is left as it is.
pub fn recover(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(leftover) = name.to_str().and_then(naming::parse) else { continue };
        let path = entry.path();
        if let Leftover::MovedAside { target } = leftover {
            let target = dir.join(target);
            if std::fs::symlink_metadata(&target).is_err()
                && std::fs::rename(&path, &target).is_ok()
            {
                continue;
            }
        }
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::names;

    /// Moved here from gemma4-train's checkpoint.rs, in the store's one naming scheme.
    #[test]
    fn leftovers_of_a_killed_save_are_removed_and_a_moved_aside_adapter_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Killed between the two renames of a commit: `best` moved aside, new one complete.
        std::fs::create_dir(d.join(".best.old-a1B2c3")).unwrap();
        std::fs::write(d.join(".best.old-a1B2c3/adapter_config.json"), "old").unwrap();
        std::fs::create_dir(d.join(".best.tmp-a1B2c3")).unwrap();
        // Killed after the second rename: the old `adapter` is still aside.
        std::fs::create_dir(d.join("adapter")).unwrap();
        std::fs::create_dir(d.join(".adapter.old-Zz9Zz9")).unwrap();
        // Killed while writing a file, and while staging a checkpoint.
        std::fs::write(d.join(".metrics.jsonl.tmp-000abc"), "partial").unwrap();
        std::fs::create_dir(d.join(".0000005.tmp-QwErTy")).unwrap();
        std::fs::write(d.join(".0000005.tmp-QwErTy/.adapter_model.safetensors.tmp-x"), "").unwrap();
        std::fs::write(d.join(".notes.tmp-mine"), "not ours: no random part").unwrap();
        recover(d);
        assert_eq!(names(d), [".notes.tmp-mine", "adapter", "best"]);
        assert_eq!(std::fs::read_to_string(d.join("best/adapter_config.json")).unwrap(), "old");
    }

    #[test]
    fn leftovers_of_a_build_before_the_one_scheme_are_recovered_too() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(".best.old-41")).unwrap();
        std::fs::create_dir(d.join(".best.tmp-41")).unwrap();
        std::fs::create_dir(d.join(".tmp-0000005-41")).unwrap();
        std::fs::write(d.join(".metrics.jsonl.tmp-7"), "partial").unwrap();
        recover(d);
        assert_eq!(names(d), ["best"]);
    }

    #[test]
    fn a_crash_between_the_renames_of_a_real_commit_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("old.txt"), "old").unwrap();
        let stage = crate::StagedDir::begin(&out).unwrap();
        std::fs::write(stage.path().join("new.txt"), "new").unwrap();
        // Simulate the kill: the first rename of commit happened, the second did not.
        let aside = naming::aside_of(out.file_name().unwrap(), stage.path());
        std::fs::rename(&out, &aside).unwrap();
        std::mem::forget(stage); // killed: no destructor runs
        recover(dir.path());
        assert_eq!(names(dir.path()), ["adapter"]);
        assert_eq!(names(&out), ["old.txt"]);
    }

    #[test]
    fn a_missing_directory_is_left_alone() {
        recover(Path::new("/no/such/directory/at/all"));
    }
}
