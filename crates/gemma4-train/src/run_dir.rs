//! A run directory belongs to one run (issue 16, case 3). A fresh run refuses an output
//! directory that holds an earlier run: mixing them would replace its adapter, best adapter and
//! metrics and overwrite or prune some of its checkpoints. A resumed run may only write where
//! its checkpoint came from. Starting over (`--force`) first moves the earlier run aside, whole.
//!
//! What does not make a run: the materialised built-in model (`base_model/`, the same for every
//! run of a seed) and the store's temporaries (writes that never completed).

use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::{Result, TrainError};

/// The entries of `out` that belong to an earlier run, sorted (none if `out` is not a directory).
fn run_entries(out: &Path) -> Result<Vec<String>> {
    if !out.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(out).map_err(|source| TrainError::Io { path: out.to_owned(), source })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "base_model" && !gemma4_store::is_temporary(n))
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Whether the checkpoint `resume` lies in `out`'s `checkpoints/` (through symlinks, `..`).
fn is_own_checkpoint(out: &Path, resume: &Path) -> bool {
    let parent = resume.canonicalize().ok().and_then(|p| p.parent().map(Path::to_owned));
    parent.is_some_and(|p| out.join("checkpoints").canonicalize().is_ok_and(|c| c == p))
}

/// Check that a run (resuming from `resume`, if any) may write into `out`: it is absent, holds
/// no earlier run, or is the run `resume`'s checkpoint belongs to. Nothing is written.
pub fn claim(out: &Path, resume: Option<&Path>) -> Result<()> {
    let held = run_entries(out)?;
    if held.is_empty() || resume.is_some_and(|r| is_own_checkpoint(out, r)) {
        return Ok(());
    }
    let shown: Vec<&str> = held.iter().take(4).map(String::as_str).collect();
    let more = if held.len() > shown.len() { ", …" } else { "" };
    let how = match (resume, checkpoint::latest(&out.join("checkpoints"))) {
        (Some(r), _) => format!(
            "--resume {} is a checkpoint of another run directory; resume into an empty `train.out_dir`",
            r.display()
        ),
        (None, Some(c)) => {
            format!("to continue it, add `--resume` (newest checkpoint: {})", c.display())
        }
        (None, None) => "it has no checkpoint to resume from".into(),
    };
    Err(TrainError::Run(format!(
        "{}: holds an earlier run ({}{more}); a run directory belongs to one run: {how}; to write elsewhere, `--set train.out_dir=OTHER_DIR`; to start over, `--force` (moves the earlier run aside to {} first)",
        out.display(),
        shown.join(", "),
        aside_name(out).display()
    )))
}

/// The first free `<out>.old-<N>` (N = 1, 2, …).
fn aside_name(out: &Path) -> PathBuf {
    let mut n = 1u64;
    loop {
        let mut name = out.as_os_str().to_owned();
        name.push(format!(".old-{n}"));
        let p = PathBuf::from(name);
        if std::fs::symlink_metadata(&p).is_err() {
            return p;
        }
        n += 1;
    }
}

/// If `out` holds an earlier run, rename it (whole) to the first free `<out>.old-<N>` and
/// return that path; else leave it as it is. Nothing is copied or removed.
pub fn move_aside(out: &Path) -> Result<Option<PathBuf>> {
    if run_entries(out)?.is_empty() {
        return Ok(None);
    }
    let aside = aside_name(out);
    std::fs::rename(out, &aside).map_err(|e| {
        TrainError::Run(format!(
            "{}: moving the earlier run aside to {}: {e}",
            out.display(),
            aside.display()
        ))
    })?;
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_base_model_only_directory_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        claim(&out, None).unwrap();
        std::fs::create_dir_all(out.join("base_model")).unwrap();
        std::fs::write(out.join(".metrics.jsonl.tmp-a1B2c3"), "x").unwrap();
        claim(&out, None).unwrap();
        assert_eq!(move_aside(&out).unwrap(), None);
        assert!(out.join("base_model").is_dir());
    }

    #[test]
    fn an_earlier_run_is_refused_then_moved_aside_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir_all(out.join("checkpoints/0000002")).unwrap();
        std::fs::write(out.join("checkpoints/0000002/trainer_state.json"), "{}").unwrap();
        std::fs::write(out.join("metrics.jsonl"), "{}\n").unwrap();
        let e = claim(&out, None).unwrap_err().to_string();
        assert!(e.contains("holds an earlier run (checkpoints, metrics.jsonl)"), "{e}");
        assert!(e.contains("--resume") && e.contains("0000002") && e.contains("run.old-1"), "{e}");
        // Resuming its own checkpoint is allowed; another run's is not.
        claim(&out, Some(&out.join("checkpoints/0000002"))).unwrap();
        let e = claim(&out, Some(&tmp.path().join("x/checkpoints/0000002"))).unwrap_err();
        assert!(e.to_string().contains("another run directory"), "{e}");
        std::fs::create_dir(tmp.path().join("run.old-1")).unwrap();
        let aside = move_aside(&out).unwrap().unwrap();
        assert_eq!(aside, tmp.path().join("run.old-2"));
        assert!(!out.exists() && aside.join("metrics.jsonl").is_file());
    }
}
