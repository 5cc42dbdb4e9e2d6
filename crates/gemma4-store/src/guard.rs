//! The one rule between a command's outputs and its inputs: no command writes to a path that
//! resolves (through symlinks, `..`, or as a hard link of the same file) to a file it reads.
//! Checked before any work, so a refused command has written nothing.

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// An error if `out` is, or resolves to, one of the files of `inputs` (a directory among them
/// stands for every file directly inside it), or if `out` is a directory (which its writer
/// replaces whole) holding one of them. An `out` that does not exist yet aliases nothing.
pub fn refuse_input_overwrite(out: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out_id) = FileId::of(out) else { return Ok(()) };
    let out_dir = out.is_dir().then(|| out.canonicalize().ok()).flatten();
    for input in inputs {
        for file in files(input) {
            let inside = |dir: &PathBuf| file.canonicalize().is_ok_and(|f| f.starts_with(dir));
            if FileId::of(&file).is_ok_and(|id| id == out_id)
                || out_dir.as_ref().is_some_and(inside)
            {
                return Err(StoreError::OverwritesInput { path: out.to_owned(), input: file });
            }
        }
    }
    Ok(())
}

/// `path` itself, or the entries directly inside it when it is a directory.
fn files(path: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![path.to_owned()],
    }
}

/// What a path resolves to: the device and inode of the file it names after symlinks (Unix),
/// else its canonical path.
#[derive(PartialEq, Eq)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path)?;
            Ok(Self::Inode(m.dev(), m.ino()))
        }
        #[cfg(not(unix))]
        {
            Ok(Self::Path(path.canonicalize()?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_reaching_an_input_is_refused_by_every_route() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        std::fs::create_dir(&model).unwrap();
        let weights = model.join("model.safetensors");
        std::fs::write(&weights, b"weights").unwrap();
        let input = tmp.path().join("in.safetensors");
        std::fs::write(&input, b"in").unwrap();
        let inputs = [model.as_path(), input.as_path()];
        // The file itself, through `..`, through a symlink, as a hard link.
        let dotdot = model.join("../model/model.safetensors");
        let link = tmp.path().join("link.safetensors");
        std::os::unix::fs::symlink(&weights, &link).unwrap();
        let hard = tmp.path().join("hard.safetensors");
        std::fs::hard_link(&input, &hard).unwrap();
        for out in [&weights, &dotdot, &link, &hard, &input] {
            let err = refuse_input_overwrite(out, &inputs).expect_err("refused");
            assert!(matches!(err, StoreError::OverwritesInput { .. }), "{out:?}: {err}");
        }
        // A directory output holding an input (here through a symlink into it) is refused too.
        let blobs = tmp.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("abc"), b"weights").unwrap();
        let snapshot = tmp.path().join("snapshot");
        std::fs::create_dir(&snapshot).unwrap();
        std::os::unix::fs::symlink(blobs.join("abc"), snapshot.join("model.safetensors")).unwrap();
        let err = refuse_input_overwrite(&blobs, &[snapshot.as_path()]).expect_err("refused");
        assert!(matches!(err, StoreError::OverwritesInput { .. }), "{err}");
        // A new file, or another existing one, is fine.
        refuse_input_overwrite(&tmp.path().join("new.safetensors"), &inputs).unwrap();
        let other = tmp.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        refuse_input_overwrite(&other, &inputs).unwrap();
    }
}
