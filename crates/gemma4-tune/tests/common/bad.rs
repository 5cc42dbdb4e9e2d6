//! Helpers for the bad-input tests (`bad_*.rs`): a recipe and data directory to break, and the
//! check that a command failed cleanly, leaving nothing half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::repo;

/// A copy of the quickstart recipe reading `data_dir`, writing into `dir/run`.
pub fn recipe(dir: &Path, data_dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes/quickstart.toml")).unwrap();
    let text = text
        .replace("../datasets/quickstart", &data_dir.display().to_string())
        .replace("\"../runs/quickstart\"", "\"run\"");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A data directory with five good quickstart lines in each split.
pub fn data_dir(root: &Path) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let good = std::fs::read_to_string(repo().join("datasets/quickstart/train.jsonl")).unwrap();
    let five: String = good.lines().take(5).map(|l| format!("{l}\n")).collect();
    for split in ["train", "valid", "test"] {
        std::fs::write(data.join(format!("{split}.jsonl")), &five).unwrap();
    }
    data
}

/// The tiny built-in model's directory, materialised once under `root` by `data`.
pub fn tiny_model(root: &Path, data: &Path) -> PathBuf {
    let src = root.join("materialise/run/base_model");
    if !src.join("model.safetensors").is_file() {
        let (out, _, stderr) =
            super::run(super::bin().arg("data").arg(recipe(&root.join("materialise"), data)));
        assert!(out.status.success(), "{stderr}");
    }
    src
}

/// A recipe training the model in `model` on `data`, writing into `dir/run`.
pub fn recipe_on(dir: &Path, data: &Path, model: &Path) -> PathBuf {
    let r = recipe(dir, data);
    let text = std::fs::read_to_string(&r).unwrap();
    let text = text.replace("builtin = \"tiny\"", &format!("path = \"{}\"", model.display()));
    std::fs::write(&r, text).unwrap();
    r
}

pub type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// Every entry under `dir`: files with their bytes, directories as `None` (empty if no `dir`).
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut entries = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().map(|e| e.unwrap()) {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_owned();
            if p.is_dir() {
                stack.push(p);
                entries.insert(rel, None);
            } else {
                entries.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    entries
}

/// Exit code 1, exactly one `error:` message containing every needle, no panic; and `dir` holds what
/// it held before (`before`), plus at most the materialised built-in model (`base_model/`, complete).
pub fn assert_fails_cleanly(
    what: &str,
    (out, _, stderr): &(Output, String, String),
    needles: &[&str],
    dir: &Path,
    before: &Snapshot,
) {
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    // One error, printed last (a TOML parse error spans a few lines: the snippet with a caret).
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{what}: one error: {stderr}"
    );
    let error = &stderr[stderr.find("\nerror:").map_or(0, |i| i + 1)..];
    println!("{what} → {}", error.trim_end()); // `--nocapture` lists the messages (docs/robustness.md)
    for n in needles {
        assert!(error.contains(n), "{what}: `{n}` not in: {stderr}");
    }
    let mut after = snapshot(dir);
    after.retain(|p, _| !p.starts_with("base_model") || before.contains_key(p));
    let changed: Vec<_> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .chain(before.keys().filter(|p| !after.contains_key(*p)))
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: files written, changed or removed in {}: {changed:?}",
        dir.display()
    );
}

/// The header (JSON) and the data section of a safetensors file.
pub fn split_safetensors(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), &bytes[8 + n..])
}
