//! Checkpoints that must not be used or spoiled, through the real binary: resuming from another
//! recipe's checkpoint (or from none) fails and changes nothing, and a non-finite loss stops the
//! run naming the step and data line, keeping the last checkpoint, or is skipped and counted
//! (the bad-input matrix of issue 6; `bad_inputs.rs` says what is covered where,
//! docs/robustness.md lists the messages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::bad::*;
use common::*;

#[test]
fn resume_from_another_recipes_checkpoint_fails_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("a"), &data);
    let short = [
        "--backend",
        "cpu",
        "--set",
        "train.iters=2",
        "--set",
        "checkpoint.every=1",
        "--set",
        "eval.batches=1",
    ];
    let (out, _, stderr) = run(bin().arg("train").arg(&r).args(short));
    assert!(out.status.success(), "{stderr}");
    let run_dir = tmp.path().join("a/run");
    let before = snapshot(&run_dir);
    // Same output directory, another learning rate: refused, and the run directory is untouched
    // (its recipe.resolved.toml still describes the run that wrote it).
    let result =
        run(bin().arg("train").arg(&r).args(short).args(["--set", "optim.lr=1e-3", "--resume"]));
    assert_fails_cleanly(
        "other lr, --resume",
        &result,
        &["checkpoint", "0000002", "different recipe"],
        &run_dir,
        &before,
    );
    // Another seed, resuming from an explicit checkpoint into a fresh directory.
    let b = tmp.path().join("b");
    let r2 = recipe(&b, &data);
    let result = run(bin()
        .arg("train")
        .arg(&r2)
        .args(short)
        .args(["--set", "train.seed=1", "--resume"])
        .arg(run_dir.join("checkpoints/0000002")));
    assert_fails_cleanly(
        "other seed, --resume DIR",
        &result,
        &["0000002", "different recipe"],
        &b.join("run"),
        &BTreeMap::new(),
    );
    // Not a checkpoint at all.
    let result = run(bin().arg("train").arg(&r2).args(short).args(["--resume"]).arg(&data));
    assert_fails_cleanly(
        "--resume a data dir",
        &result,
        &["trainer_state.json"],
        &b.join("run"),
        &BTreeMap::new(),
    );
    let result = run(bin().arg("train").arg(&r2).args(short).args(["--resume"]));
    assert_fails_cleanly(
        "--resume with no checkpoint",
        &result,
        &["--resume: no checkpoint in", "checkpoints"],
        &b.join("run"),
        &BTreeMap::new(),
    );
    // Numbers in the state that counting on would overflow, or a broken loss scaler: refused
    // when loaded, naming the file and key (was: accepted, and e.g. `trained_tokens += tokens`
    // overflows).
    let state_path = run_dir.join("checkpoints/0000002/trainer_state.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let scaler = serde_json::json!({"scale": 1.0, "enabled": true, "good_steps": u32::MAX});
    for (key, value, needle) in [
        ("trained_tokens", serde_json::json!(u64::MAX), "`trained_tokens`"),
        ("step", serde_json::json!(1u64 << 60), "`step`"),
        ("loss_scale", scaler, "loss_scale.good_steps"),
    ] {
        let mut s = state.clone();
        s[key] = value;
        std::fs::write(&state_path, s.to_string()).unwrap();
        let before = snapshot(&run_dir);
        let result = run(bin().arg("train").arg(&r).args(short).arg("--resume"));
        let needles = ["checkpoint", "0000002/trainer_state.json", needle];
        assert_fails_cleanly(key, &result, &needles, &run_dir, &before);
    }
}

// ── Numeric faults ──

/// A copy of the tiny built-in model (materialised by `data`) whose per-layer embedding row of
/// `@` is NaN: exactly the samples containing `@` give a NaN loss.
fn poisoned_model(root: &Path, data: &Path) -> PathBuf {
    let r = recipe(&root.join("materialise"), data);
    let (out, _, stderr) = run(bin().arg("data").arg(&r));
    assert!(out.status.success(), "{stderr}");
    let (src, dst) = (root.join("materialise/run/base_model"), root.join("poisoned"));
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("tokenizer.json")).unwrap())
            .unwrap();
    let id = tokenizer["model"]["vocab"]["@"].as_u64().unwrap() as usize;
    let mut bytes = std::fs::read(dst.join("model.safetensors")).unwrap();
    let (header, _) = split_safetensors(&bytes);
    let t = &header["model.embed_tokens_per_layer.weight"];
    let width = t["shape"][1].as_u64().unwrap() as usize;
    let start = 8
        + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
        + t["data_offsets"][0].as_u64().unwrap() as usize
        + id * width * 4;
    for c in bytes[start..start + width * 4].chunks_exact_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(dst.join("model.safetensors"), bytes).unwrap();
    dst
}

fn all_finite(adapter: &Path) -> bool {
    let bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().iter().all(|(_, v)| {
        v.data().chunks_exact(4).all(|c| f32::from_le_bytes(c.try_into().unwrap()).is_finite())
    })
}

#[test]
fn a_non_finite_loss_stops_naming_step_and_line_or_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(repo().join("datasets/quickstart/train.jsonl")).unwrap();
    let twenty: String = good.lines().take(20).map(|l| format!("{l}\n")).collect();
    std::fs::write(data.join("train.jsonl"), &twenty).unwrap();
    let model = poisoned_model(tmp.path(), &data);
    let dir = tmp.path().join("a");
    let r = recipe(&dir, &data);
    std::fs::write(
        &r,
        std::fs::read_to_string(&r)
            .unwrap()
            .replace("builtin = \"tiny\"", &format!("path = \"{}\"", model.display())),
    )
    .unwrap();
    let set = [
        "--backend",
        "cpu",
        "--set",
        "train.batch_size=1",
        "--set",
        "checkpoint.every=2",
        "--set",
        "eval.every=0",
        "--set",
        "eval.batches=1",
    ];
    // Four good steps (checkpoints 2 and 4), then line 21 holds the poisoned token.
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=4"]));
    assert!(out.status.success(), "{stderr}");
    std::fs::write(data.join("train.jsonl"), format!("{twenty}{{\"messages\": [{{\"role\": \"user\", \"content\": \"Upper: @\"}}, {{\"role\": \"assistant\", \"content\": \"@\"}}]}}\n")).unwrap();
    let run_dir = dir.join("run");
    let adapter_before = snapshot(&run_dir.join("adapter"));

    // Default: the run stops at the poisoned step, naming it and the line; earlier checkpoints
    // and the adapter are intact and finite.
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=60", "--resume"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let train_path = data.join("train.jsonl").display().to_string();
    assert!(
        stderr.contains("non-finite loss")
            && stderr.contains(&format!("lines [21] of {train_path}"))
            && stderr.contains("cause: the data meeting the base model's weights")
            && stderr.contains("skip_nonfinite"),
        "{stderr}"
    );
    let step: usize = stderr
        .split("step ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(step > 4, "{stderr}");
    let last = (step - 1) / 2 * 2;
    let ckpt = run_dir.join(format!("checkpoints/{last:07}"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], last);
    assert!(all_finite(&ckpt) && snapshot(&run_dir.join("adapter")) == adapter_before);

    // As the message says: skip_nonfinite (allowed on --resume) skips and counts such steps.
    let (out, stdout, stderr) = run(bin().arg("train").arg(&r).args(set).args([
        "--set",
        "train.iters=60",
        "--set",
        "train.skip_nonfinite=true",
        "--resume",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("step {step:>5} | skipped: non-finite loss NaN")), "{stdout}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("checkpoints/0000060/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["skipped_steps"].as_u64().unwrap() >= 1, "{state}");
    assert!(all_finite(&run_dir.join("adapter")) && all_finite(&run_dir.join("best")));
}

#[test]
fn nan_in_a_checkpoints_optimizer_state_is_refused_when_loaded_naming_the_tensor() {
    // Issue 16: it surfaced as a non-finite loss blamed on the data, the checkpoint called intact.
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("a"), &data);
    let set = ["--backend", "cpu", "--set", "checkpoint.every=1", "--set", "eval.batches=1"];
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=2"]));
    assert!(out.status.success(), "{stderr}");
    let run_dir = tmp.path().join("a/run");
    let opt = run_dir.join("checkpoints/0000002/optimizer.safetensors");
    let mut bytes = std::fs::read(&opt).unwrap();
    let (header, _) = split_safetensors(&bytes);
    let (name, t) = header.iter().find(|(n, _)| n.starts_with("v.")).unwrap();
    let name = name.clone();
    let at = 8
        + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
        + t["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&opt, bytes).unwrap();
    let before = snapshot(&run_dir);
    let result =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=4", "--resume"]));
    assert_fails_cleanly(
        "NaN in the optimizer state",
        &result,
        &[&opt.display().to_string(), &format!("optimizer state {name}"), "not finite"],
        &run_dir,
        &before,
    );
}
