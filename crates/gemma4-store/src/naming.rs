//! The one naming scheme for temporaries, so that [`crate::recover`] knows every name the
//! store makes and no other crate has to:
//!
//! - `.<name>.tmp-XXXXXX`: a file or directory being written, to become `<name>`;
//! - `.<name>.old-XXXXXX`: the previous `<name>`, moved aside while its replacement is renamed in
//!   (same `XXXXXX` as the staging directory it pairs with).
//!
//! `XXXXXX` is `tempfile`'s random alphanumerics. Names written before this scheme
//! (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`, and checkpoints' `.tmp-<step>-<pid>`) are still
//! recognised, so a run killed by an older build recovers with a newer one.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// Random characters that end every temporary's name.
pub(crate) const RAND_LEN: usize = 6;
const TMP: &str = ".tmp-";
const OLD: &str = ".old-";

/// `path`'s directory (`.` for a bare file name) and its file name.
pub(crate) fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let name = path.file_name().ok_or_else(|| StoreError::NoFileName { path: path.to_owned() })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

/// `.<name>.tmp-`: the prefix `tempfile` completes with [`RAND_LEN`] random characters.
pub(crate) fn temp_prefix(name: &OsStr) -> OsString {
    hidden(name, TMP)
}

/// `.<name>.old-XXXXXX`, beside `temp` (`.<name>.tmp-XXXXXX`) and with its random part.
pub(crate) fn aside_of(name: &OsStr, temp: &Path) -> PathBuf {
    let bytes = temp.as_os_str().as_encoded_bytes();
    // The random part is ASCII, so the last RAND_LEN bytes are whole characters.
    let random = std::str::from_utf8(&bytes[bytes.len().saturating_sub(RAND_LEN)..]).unwrap_or("");
    let mut aside = hidden(name, OLD);
    aside.push(random);
    temp.with_file_name(aside)
}

fn hidden(name: &OsStr, tag: &str) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(tag);
    s
}

/// What a name left in a directory is, if it is one of ours.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// A file or directory that was being written: never complete.
    Temporary,
    /// The previous version of `target`, moved aside.
    MovedAside { target: String },
}

/// Classify a directory entry's name; `None` if the store did not make it.
pub(crate) fn parse(name: &str) -> Option<Leftover> {
    let rest = name.strip_prefix('.')?;
    if let Some((target, random)) = rest.rsplit_once(OLD)
        && !target.is_empty()
        && is_random(random)
    {
        return Some(Leftover::MovedAside { target: target.to_owned() });
    }
    if let Some((target, random)) = rest.rsplit_once(TMP)
        && !target.is_empty()
        && is_random(random)
    {
        return Some(Leftover::Temporary);
    }
    // Before this scheme, checkpoints were staged as `.tmp-<step>-<pid>`.
    let (step, pid) = rest.strip_prefix("tmp-")?.split_once('-')?;
    (is_digits(step) && is_digits(pid)).then_some(Leftover::Temporary)
}

/// Whether `name` is a temporary of the store (a write that never completed).
pub fn is_temporary(name: &OsStr) -> bool {
    name.to_str().and_then(parse) == Some(Leftover::Temporary)
}

/// `tempfile`'s random part, or a process id (the names before this scheme).
fn is_random(s: &str) -> bool {
    (s.len() == RAND_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())) || is_digits(s)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_ours_are_recognised_and_others_are_not() {
        let aside = |t: &str| Some(Leftover::MovedAside { target: t.into() });
        assert_eq!(parse(".adapter.tmp-a1B2c3"), Some(Leftover::Temporary));
        assert_eq!(parse(".metrics.jsonl.tmp-000abc"), Some(Leftover::Temporary));
        assert_eq!(parse(".best.old-Zz9Zz9"), aside("best"));
        assert_eq!(parse(".a.tmp-b.old-123456"), aside("a.tmp-b"));
        // Before this scheme: pids, and checkpoints' `.tmp-<step>-<pid>`.
        assert_eq!(parse(".best.tmp-41"), Some(Leftover::Temporary));
        assert_eq!(parse(".adapter.old-7"), aside("adapter"));
        assert_eq!(parse(".tmp-0000005-4242"), Some(Leftover::Temporary));
        for theirs in [
            ".notes.tmp-mine",
            "adapter.tmp-a1B2c3",
            ".tmp-a1B2c3",
            ".x.tmp-",
            ".x.tmp-abc-de",
            "0000005",
        ] {
            assert_eq!(parse(theirs), None, "{theirs}");
        }
    }

    #[test]
    fn the_moved_aside_name_shares_the_staging_directorys_random_part() {
        let temp = Path::new("/runs/x/.best.tmp-a1B2c3");
        assert_eq!(aside_of(OsStr::new("best"), temp), Path::new("/runs/x/.best.old-a1B2c3"));
        assert_eq!(temp_prefix(OsStr::new("best")), ".best.tmp-");
        assert_eq!(
            split(Path::new("o.safetensors")).unwrap(),
            (PathBuf::from("."), "o.safetensors".into())
        );
        assert!(split(Path::new("/")).is_err());
    }
}
