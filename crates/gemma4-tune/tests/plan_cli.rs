//! `train --plan` through the real binary: the plan of a recipe on the CPU backend, as a table
//! and as JSON, the `auto` values resolved; a step that cannot fit exits 1 naming the numbers and
//! the changes that would fit, before anything is written.

use std::path::{Path, PathBuf};

mod common;
use common::*;

/// A recipe on the E2B preset's config.json (no weights: the plan reads the config only).
fn e2b_recipe(dir: &Path, extra: &str) -> PathBuf {
    let config = repo().join("crates/gemma4-tune/presets/e2b.json");
    let text = format!(
        "[model]\npath = {:?}\n[data]\ntrain = \"missing.jsonl\"\nmax_seq_len = 2048\n[train]\nout_dir = \"run\"\n{extra}",
        config.display().to_string()
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_prints_both_estimates_and_resolves_auto_for_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let r = e2b_recipe(tmp.path(), "batch_size = 1\n");
    let (out, stdout, stderr) =
        run(bin().args(["train", "--plan", "--json", "--backend", "cpu"]).arg(&r));
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!((plan["backend"].as_str(), plan["dtype"].as_str()), (Some("cpu"), Some("f32")));
    assert_eq!(plan["gradient_checkpointing"]["setting"], "auto");
    let (without, with) = (&plan["without_recompute"], &plan["with_recompute"]);
    let total = |e: &serde_json::Value| e["total"].as_u64().unwrap();
    assert!(total(with) < total(without), "{plan}");
    // f32 E2B weights without the host-side PLE table: 2.68 G values.
    assert_eq!(without["weights"].as_u64().unwrap() / 4, 2_682_412_323);
    let (out, stdout, _) = run(bin().args(["train", "--plan", "--backend", "cpu"]).arg(&r));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("memory plan: cpu · batch 1 × seq 2048 · f32"), "{stdout}");
    assert!(stdout.contains("no recompute") && stdout.contains("peak"), "{stdout}");
    assert!(out.status.code().is_some());
    assert!(!tmp.path().join("run").exists(), "--plan writes nothing");
}

#[test]
fn a_step_that_cannot_fit_fails_at_once_with_the_numbers_and_what_to_change() {
    let tmp = tempfile::tempdir().unwrap();
    let r = e2b_recipe(tmp.path(), "batch_size = 60000\ngradient_checkpointing = false\n");
    let (out, _, stderr) = run(bin().args(["train", "--backend", "cpu"]).arg(&r));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in ["memory plan: a step needs an estimated", "GiB", "activations", "holds"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!tmp.path().join("run").exists(), "nothing written");
}

#[test]
fn plan_of_the_first_layers_recomputed_sits_between_none_and_all() {
    let tmp = tempfile::tempdir().unwrap();
    let r = e2b_recipe(tmp.path(), "batch_size = 1\ngradient_checkpointing = 10\n");
    let (_, stdout, stderr) =
        run(bin().args(["train", "--plan", "--json", "--backend", "cpu"]).arg(&r));
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect(&stderr);
    let gc = &plan["gradient_checkpointing"];
    assert_eq!((gc["setting"].as_str(), gc["resolved"].as_u64()), (Some("10"), Some(10)), "{gc}");
    assert_eq!((gc["recompute_layers"].as_u64(), gc["layers"].as_u64()), (Some(10), Some(35)));
    let total = |key: &str| plan[key]["total"].as_u64().unwrap();
    let chosen = plan["chosen_total_bytes"].as_u64().unwrap();
    assert!(total("with_recompute") < chosen && chosen < total("without_recompute"), "{plan}");
    let (_, stdout, _) = run(bin().args(["train", "--plan", "--backend", "cpu"]).arg(&r));
    assert!(
        stdout.contains("first 10") && stdout.contains("gradient_checkpointing 10"),
        "{stdout}"
    );
}
