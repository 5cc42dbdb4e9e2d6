//! The training commands through the real binary: quickstart-style training writes its outputs
//! and resumes, `data` and `eval` report, `logits --adapter --grads` reproduces PEFT, and bad
//! data or recipes fail with one named cause and write nothing.

use std::path::{Path, PathBuf};

mod common;
use common::*;

/// A copy of the quickstart recipe pointing at `data_dir`, writing into `dir/run`.
fn recipe(dir: &Path, data_dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes/quickstart.toml")).unwrap();
    let text = text
        .replace("../datasets/quickstart", &data_dir.display().to_string())
        .replace("\"../runs/quickstart\"", "\"run\"");
    let path = dir.join("recipe.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

#[test]
fn train_writes_adapter_metrics_plot_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(tmp.path(), &repo().join("datasets/quickstart"), "");
    let set = [
        "--set",
        "train.iters=6",
        "--set",
        "eval.every=3",
        "--set",
        "checkpoint.every=3",
        "--set",
        "eval.batches=2",
        "--backend",
        "cpu",
    ];
    let (out, stdout, stderr) = run(bin().arg("train").arg(&r).args(set));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("step     3 | val_loss") && stdout.contains("LoRA:"), "{stdout}");
    let run_dir = tmp.path().join("run");
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "recipe.resolved.toml",
        "checkpoints/0000006/trainer_state.json",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    // Resume from the newest checkpoint and train further (the step count may grow).
    let (out, stdout, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=8", "--resume"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("at step 6") && stdout.contains("done: 8 steps"), "{stdout}");
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().any(|l| l.contains("\"step\":8")), "{metrics}");
}

#[test]
fn data_and_eval_report_on_the_quickstart_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(tmp.path(), &repo().join("datasets/quickstart"), "");
    let (out, stdout, stderr) = run(bin().arg("data").arg(&r).args(["--show", "1"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("samples") && stdout.contains("⟦") && stdout.contains("line 1"),
        "{stdout}"
    );
    let (out, stdout, stderr) =
        run(bin().arg("eval").arg(&r).args(["--split", "test", "--backend", "cpu"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("perplexity") && stdout.contains("base model"), "{stdout}");
}

#[test]
fn logits_with_adapter_grads_reproduces_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = repo().join("tests/fixtures/moe_keqv");
    let out_path = tmp.path().join("o.safetensors");
    let (out, stdout, stderr) = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(&fx)
        .arg("--input")
        .arg(fx.join("peft/golden.safetensors"))
        .arg("--adapter")
        .arg(fx.join("peft"))
        .arg("--grads")
        .arg("--out")
        .arg(&out_path));
    assert!(out.status.success(), "{stderr}");
    let line = stdout.lines().find(|l| l.contains("reference lora_logits")).expect(&stdout);
    let err: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(err < 1e-4, "{line}");
    let ours = std::fs::read(&out_path).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let gold = std::fs::read(fx.join("peft/golden.safetensors")).unwrap();
    let gold = safetensors::SafeTensors::deserialize(&gold).unwrap();
    let f32s = |v: safetensors::tensor::TensorView| {
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect::<Vec<_>>()
    };
    let mut n = 0;
    for name in gold.names().into_iter().filter(|n| n.starts_with("grad.")) {
        let (a, b) = (f32s(ours.tensor(name).unwrap()), f32s(gold.tensor(name).unwrap()));
        let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        assert!((num / den).sqrt() < 1e-3, "{name}");
        n += 1;
    }
    assert!(n > 0 && ours.names().iter().any(|k| k.contains("experts.base_layer.lora_A")));
}

#[test]
fn bad_data_and_recipes_fail_with_a_named_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let good = std::fs::read_to_string(repo().join("datasets/quickstart/train.jsonl")).unwrap();
    let first_lines: String = good.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(data.join("valid.jsonl"), &first_lines).unwrap();
    std::fs::write(data.join("test.jsonl"), &first_lines).unwrap();
    let cases: [(&str, String, &str); 4] = [
        ("malformed JSON", format!("{first_lines}{{\"messages\": [\n"), "train.jsonl:6"),
        (
            "missing field",
            format!("{first_lines}{{\"messages\": [{{\"role\": \"user\"}}]}}\n"),
            "train.jsonl:6",
        ),
        (
            "unknown role",
            format!(
                "{first_lines}{{\"messages\": [{{\"role\": \"narrator\", \"content\": \"x\"}}]}}\n"
            ),
            "narrator",
        ),
        ("empty split", String::new(), "train.jsonl"),
    ];
    for (what, train, needle) in cases {
        std::fs::write(data.join("train.jsonl"), train).unwrap();
        let dir = tmp.path().join(what.replace(' ', "_"));
        std::fs::create_dir(&dir).unwrap();
        let r = recipe(&dir, &data, "");
        let (out, _, stderr) =
            run(bin().arg("train").arg(&r).args(["--set", "train.iters=2", "--backend", "cpu"]));
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(!dir.join("run/adapter").exists(), "{what}: nothing written");
    }
    let dir = tmp.path().join("bad_key");
    std::fs::create_dir(&dir).unwrap();
    let r = recipe(&dir, &repo().join("datasets/quickstart"), "[extra]\nfoo = 1\n");
    let (out, _, stderr) = run(bin().arg("train").arg(&r));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("extra"), "{stderr}");
    let r = recipe(&dir, &repo().join("datasets/quickstart"), "");
    let (out, _, stderr) = run(bin().arg("train").arg(&r).args(["--set", "optim.learning_rate=1"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("learning_rate"), "{stderr}");
}
