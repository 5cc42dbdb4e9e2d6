//! Recipes and data that work from a clone (issue 17): no recipe, README or source file points
//! at the development material beside the repository (`../shared`), every recipe parses and
//! keeps its paths inside the repository, and `datasets/fetch.sh` fetches and verifies the
//! public datasets (from a mirror here: `<repo>/../shared/datasets`, skipped where absent) and
//! refuses a corrupted or missing file without leaving anything behind.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

use gemma4_train::Recipe;

/// Every file `datasets/fetch.sh` writes: (dataset, file).
const FETCHED: [(&str, &str); 5] = [
    ("wikisql-mlx", "train.jsonl"),
    ("wikisql-mlx", "valid.jsonl"),
    ("wikisql-mlx", "test.jsonl"),
    ("wwdc25-mlx", "train.jsonl"),
    ("wwdc25-mlx", "valid.jsonl"),
];

/// The ml-explore/mlx-examples commit every fetched file comes from.
const COMMIT: &str = "7ddca42f4dc83ea70f4c53d1b6a917d335ab435d";

/// Paths of this development setup that users do not have.
const FORBIDDEN: [&str; 2] = ["../shared", "/work/shared"];

/// The repository root (canonical, so lexical comparisons with resolved recipe paths hold).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// The development mirror of the public datasets, or `None` (with a message) when absent.
fn shared_datasets(test: &str) -> Option<PathBuf> {
    let dir = repo().join("../shared/datasets");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: {} is absent", dir.display());
        None
    }
}

/// Files of the repository as relative `/`-separated paths: tracked plus untracked-not-ignored
/// (what a commit could contain), from git; a walk of the tree where git is unavailable.
fn repo_files(root: &Path) -> Vec<String> {
    let git = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output();
    if let Some(out) = git.ok().filter(|o| o.status.success()) {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        return text.split('\0').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    }
    let mut files = vec!["README.md".to_owned()];
    for top in ["crates", "recipes", "datasets", "tests", ".ci"] {
        walk(root, &root.join(top), &mut files);
    }
    files
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(root, &path, files);
            }
        } else if let Ok(rel) = path.strip_prefix(root) {
            files.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Recipes, READMEs and source files (.rs, .toml, .sh, .py) under the directories users get.
fn in_scope(rel: &str) -> bool {
    if rel == "README.md" {
        return true;
    }
    let tops = ["crates/", "recipes/", "datasets/", "tests/", ".ci/"];
    if !tops.iter().any(|t| rel.starts_with(t)) {
        return false;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    name == "README.md" || matches!(ext, Some("rs" | "toml" | "sh" | "py"))
}

/// Tests that read the development material themselves and skip where it is absent:
/// integration tests (`crates/<crate>/tests/`, this file included) and the reference scripts
/// (`tests/reference/`, run by developers, with their developer README).
fn may_read_shared(rel: &str) -> bool {
    let in_crate_tests = rel.starts_with("crates/") && rel.split('/').nth(2) == Some("tests");
    in_crate_tests || rel.starts_with("tests/reference/")
}

#[test]
fn no_file_users_get_points_at_shared() {
    let root = repo();
    let scanned: Vec<String> =
        repo_files(&root).into_iter().filter(|f| in_scope(f) && !may_read_shared(f)).collect();
    // The scan covers what it claims to (a wrong filter would pass vacuously).
    for must in
        ["README.md", "recipes/lora.toml", "datasets/fetch.sh", "crates/gemma4-tune/src/main.rs"]
    {
        assert!(scanned.iter().any(|f| f == must), "{must} is not scanned: {scanned:?}");
    }
    assert!(!scanned.iter().any(|f| f.starts_with("crates/gemma4-tune/tests/")));
    let mut offenders = Vec::new();
    for rel in &scanned {
        let Ok(bytes) = std::fs::read(root.join(rel)) else { continue }; // deleted, not committed
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|p| line.contains(p)) {
                offenders.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "files users get refer to the development material beside the repository:\n{}",
        offenders.join("\n")
    );
}

/// `path` with `.` and `..` removed lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every recipe in `dir`, loaded (parsed, bounds checked, paths resolved), with its file name.
fn recipes_in(dir: &Path) -> Vec<(String, Recipe)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read recipes/")
        .map(|e| e.expect("recipes/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let load = |p: &PathBuf| {
        let name = p.file_name().expect("file name").to_string_lossy().into_owned();
        let recipe = Recipe::load(p, &[]).unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        (name, recipe)
    };
    paths.iter().map(load).collect()
}

fn data_paths(recipe: &Recipe) -> Vec<PathBuf> {
    let d = &recipe.data;
    std::iter::once(d.train.clone()).chain(d.valid.clone()).chain(d.test.clone()).collect()
}

#[test]
fn every_recipe_parses_and_stays_inside_the_repository() {
    let root = repo();
    let recipes = recipes_in(&root.join("recipes"));
    assert!(recipes.len() >= 3, "recipes/ holds {} recipes", recipes.len());
    for (name, recipe) in &recipes {
        let mut paths = data_paths(recipe);
        paths.extend(recipe.model.path.clone());
        paths.push(recipe.train.out_dir.clone());
        for p in paths {
            let p = normalize(&p);
            assert!(p.starts_with(&root), "{name}: {} is outside the repository", p.display());
        }
        for p in data_paths(recipe) {
            let p = normalize(&p);
            assert!(
                p.starts_with(root.join("datasets")),
                "{name}: data {} not in datasets/",
                p.display()
            );
        }
    }
}

/// `bash datasets/fetch.sh ARGS` with `DATASETS_OUT=out` and `DATASETS_MIRROR=mirror`.
fn fetch(out: &Path, mirror: &Path, args: &[&str]) -> (Output, String, String) {
    let output = Command::new("bash")
        .arg(repo().join("datasets/fetch.sh"))
        .args(args)
        .env("DATASETS_OUT", out)
        .env("DATASETS_MIRROR", mirror)
        .output()
        .expect("run bash datasets/fetch.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn fetch_from_a_mirror_verifies_and_feeds_the_recipes() {
    let Some(mirror) = shared_datasets("fetch_from_a_mirror_verifies_and_feeds_the_recipes") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("datasets");
    let (o, stdout, stderr) = fetch(&out, &mirror, &[]);
    assert!(o.status.success(), "fetch.sh failed:\n{stdout}\n{stderr}");
    for (name, file) in FETCHED {
        let got = std::fs::read(out.join(name).join(file)).expect("fetched file");
        let want = std::fs::read(mirror.join(name).join(file)).expect("mirror file");
        assert!(got == want, "{name}/{file} differs from the mirror");
        let notice = std::fs::read_to_string(out.join(name).join("SOURCE.md")).expect("SOURCE.md");
        assert!(notice.contains("MIT") && notice.contains(COMMIT), "{name}/SOURCE.md");
    }
    // The recipes' data: committed in the repository, or fetched (paths relative to recipes/).
    let root = repo();
    let mut fetched_used = 0;
    for (name, recipe) in recipes_in(&root.join("recipes")) {
        for p in data_paths(&recipe) {
            let p = normalize(&p);
            let rel = p.strip_prefix(root.join("datasets")).expect("data under datasets/");
            let committed = p.is_file() && !FETCHED.iter().any(|(n, _)| rel.starts_with(n));
            fetched_used += usize::from(!committed);
            assert!(committed || out.join(rel).is_file(), "{name}: {} not fetched", rel.display());
        }
    }
    assert_eq!(fetched_used, FETCHED.len(), "the real recipes use every fetched file");

    // Idempotent: a second run keeps the files; a damaged one is fetched again.
    std::fs::write(out.join("wwdc25-mlx/valid.jsonl"), "damaged\n").expect("damage");
    let (o, stdout, stderr) = fetch(&out, &mirror, &[]);
    assert!(o.status.success(), "second run failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("present, sha256 ok").count(), FETCHED.len() - 1, "{stdout}");
    assert!(stdout.contains("wwdc25-mlx/valid.jsonl: fetched"), "{stdout}");
    let want = std::fs::read(mirror.join("wwdc25-mlx/valid.jsonl")).expect("mirror file");
    assert!(std::fs::read(out.join("wwdc25-mlx/valid.jsonl")).expect("refetched") == want);
}

/// Names of everything in `dir` (hidden temporary files included); empty when it is absent.
fn entries(dir: &Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn corrupted_or_missing_mirror_file_fails_naming_it_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir_all(mirror.join("wikisql-mlx")).expect("mirror dir");
    // A copy one byte short where the real data is at hand, junk otherwise.
    let real = repo().join("../shared/datasets/wikisql-mlx/train.jsonl");
    let mut bytes = std::fs::read(real).unwrap_or_else(|_| b"{\"text\": \"corrupted\"}\n".to_vec());
    bytes.pop();
    std::fs::write(mirror.join("wikisql-mlx/train.jsonl"), &bytes).expect("corrupt copy");

    let out = tmp.path().join("out");
    let (o, stdout, stderr) = fetch(&out, &mirror, &["wikisql-mlx"]);
    assert!(!o.status.success(), "a checksum mismatch succeeded:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("wikisql-mlx/train.jsonl") && stderr.contains("sha256 mismatch"),
        "{stderr}"
    );
    assert_eq!(entries(&out.join("wikisql-mlx")), Vec::<String>::new(), "left behind");

    // wwdc25-mlx is not in the mirror at all: the first file is named, nothing is written.
    let (o, stdout, stderr) = fetch(&out, &mirror, &["wwdc25-mlx"]);
    assert!(!o.status.success(), "a missing file succeeded:\n{stdout}\n{stderr}");
    assert!(stderr.contains("wwdc25-mlx/train.jsonl"), "{stderr}");
    assert_eq!(entries(&out.join("wwdc25-mlx")), Vec::<String>::new(), "left behind");

    let (o, _, stderr) = fetch(&out, &mirror, &["no-such-set"]);
    assert!(!o.status.success() && stderr.contains("unknown dataset 'no-such-set'"), "{stderr}");
}
