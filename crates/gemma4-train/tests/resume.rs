//! `--resume` continues exactly where a run stopped: a run interrupted after a checkpoint and
//! resumed ends with the same adapter, loss and validation loss as an uninterrupted run
//! (CPU backend; bit-exact, the flex backend is deterministic).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gemma4_train::{Recipe, checkpoint};

fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/quickstart")
}

fn recipe(dir: &Path, iters: usize) -> Recipe {
    recipe_with(dir, iters, "f32")
}

fn recipe_with(dir: &Path, iters: usize, dtype: &str) -> Recipe {
    let text = format!(
        r#"
[model]
builtin = "tiny"
[lora]
r = 4
lora_alpha = 8
lora_dropout = 0.1
[data]
train = "{d}/train.jsonl"
valid = "{d}/valid.jsonl"
max_seq_len = 64
[optim]
lr = 5e-3
[schedule]
kind = "cosine"
warmup_steps = 2
[train]
iters = 8
batch_size = 4
grad_accum = 2
seed = 11
report_every = 2
out_dir = "run"
[eval]
every = 4
batches = 2
[checkpoint]
every = 4
keep_last = 2
"#,
        d = datasets().display()
    );
    let path = dir.join("r.toml");
    std::fs::write(&path, text).unwrap();
    Recipe::load(&path, &[format!("train.iters={iters}"), format!("model.dtype={dtype:?}")])
        .unwrap()
}

/// Burn's CPU backend seeds one process-wide RNG (dropout masks): runs in this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn adapter_bytes(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("adapter/adapter_model.safetensors")).unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    resume_equals_uninterrupted("f32");
}

/// f16 adds the loss scaler's state (its scale and its count of good steps towards the next
/// doubling): a resumed run continues from the saved state, not from a fresh scaler.
#[test]
fn resumed_f16_run_equals_uninterrupted_run() {
    resume_equals_uninterrupted("f16");
}

fn resume_equals_uninterrupted(dtype: &str) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let a = tempfile::tempdir().unwrap();
    let full = gemma4_train::train(&recipe_with(a.path(), 8, dtype), &device, None).unwrap();

    let b = tempfile::tempdir().unwrap();
    // Resuming from this run's step-4 snapshot replays steps 5..8 from the saved state alone
    // (adapter, optimizer moments, data position, loss scale; dropout masks are seeded by step):
    // the outputs written by the first pass must come back identical.
    let first = gemma4_train::train(&recipe_with(b.path(), 8, dtype), &device, None).unwrap();
    assert_eq!(first.final_train_loss, full.final_train_loss, "two fresh runs are identical");
    let snapshot = b.path().join("run/checkpoints/0000004");
    assert!(snapshot.is_dir(), "step-4 checkpoint kept");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("trainer_state.json")).unwrap())
            .unwrap();
    if dtype == "f16" {
        assert_eq!(state["loss_scale"]["scale"], gemma4_train::optim::LossScale::INIT, "{state}");
        assert_eq!(
            state["loss_scale"]["good_steps"], 4,
            "four good steps counted towards the next doubling: {state}"
        );
    }
    std::fs::remove_dir_all(b.path().join("run/adapter")).unwrap();
    let resumed =
        gemma4_train::train(&recipe_with(b.path(), 8, dtype), &device, Some(&snapshot)).unwrap();
    assert_eq!(resumed.steps, 8);
    assert_eq!(resumed.final_train_loss, full.final_train_loss);
    assert_eq!(resumed.final_val_loss, full.final_val_loss);
    assert_eq!(adapter_bytes(&a.path().join("run")), adapter_bytes(&b.path().join("run")));
    assert_eq!(
        checkpoint::latest(&b.path().join("run/checkpoints")).unwrap().file_name().unwrap(),
        "0000008"
    );
}

#[test]
fn resuming_with_another_recipe_is_refused() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let a = tempfile::tempdir().unwrap();
    gemma4_train::train(&recipe(a.path(), 4), &device, None).unwrap();
    let snapshot = a.path().join("run/checkpoints/0000004");
    let mut other = recipe(a.path(), 8);
    other.optim.lr = 1e-3;
    let e = gemma4_train::train(&other, &device, Some(&snapshot)).unwrap_err().to_string();
    assert!(e.contains("different recipe") && e.contains("0000004"), "{e}");
}

#[test]
fn validation_loss_falls_on_the_quickstart_task() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let a = tempfile::tempdir().unwrap();
    let mut r = recipe(a.path(), 30);
    r.lora.lora_dropout = 0.0;
    r.eval.every = 30;
    let s = gemma4_train::train(&r, &device, None).unwrap();
    let (first, last) = (s.first_val_loss.unwrap(), s.final_val_loss.unwrap());
    assert!(last < 0.5 * first, "valid loss {first} → {last}");
    let out = a.path().join("run");
    for f in [
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "best/adapter_model.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "recipe.resolved.toml",
    ] {
        assert!(out.join(f).is_file(), "{f} written");
    }
}
