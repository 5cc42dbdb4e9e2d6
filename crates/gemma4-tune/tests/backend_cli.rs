//! `--backend` through the real binary: `auto` (the default) says which device it took, and on
//! a machine without a GPU (Mesa's software Vulkan, lavapipe, does not count) falls back to the
//! CPU with a one-line note and trains; with no Vulkan driver at all it does the same; an
//! explicit backend that is absent or not compiled in is one error, exit 1, no panic.
//! (The rule itself: `choose`'s unit tests in src/backend/probe.rs.)

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// `--backend auto`, not the CPU the other tests pin through `GEMMA4_TUNE_BACKEND`.
fn auto() -> Command {
    let mut cmd = bin();
    cmd.env_remove("GEMMA4_TUNE_BACKEND");
    cmd
}

/// The Vulkan loader finds no driver: what a machine without one sees.
#[cfg(all(target_os = "linux", feature = "wgpu"))]
fn without_vulkan_drivers(cmd: &mut Command) -> &mut Command {
    let none = "/nonexistent/gemma4-tune-no-icd.json";
    cmd.env("VK_ICD_FILENAMES", none).env("VK_DRIVER_FILES", none)
}

/// The `device:` line, and the `note:` line if any.
fn device_lines(stderr: &str) -> (String, Option<String>) {
    let line = stderr.lines().find(|l| l.starts_with("device: ")).expect(stderr).to_owned();
    (line, stderr.lines().find(|l| l.starts_with("note: ")).map(str::to_owned))
}

/// Mesa's lavapipe is installed (as `.ci/run` installs it).
fn lavapipe_installed() -> bool {
    std::fs::read_dir("/usr/share/vulkan/icd.d")
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd")))
        .unwrap_or(false)
}

/// Whether lavapipe is there to run on; without it the test skips with a message, except under
/// `GEMMA4_TUNE_REQUIRE_GPU_TESTS=1` (`.ci/run` installs it and sets this), where it fails.
#[cfg(all(target_os = "linux", feature = "wgpu"))]
fn lavapipe_or_skip() -> bool {
    if lavapipe_installed() {
        return true;
    }
    let required = std::env::var("GEMMA4_TUNE_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1");
    assert!(!required, "no lavapipe, and GEMMA4_TUNE_REQUIRE_GPU_TESTS=1 requires it");
    eprintln!("skipped: no lavapipe (mesa-vulkan-drivers)");
    false
}

/// The quickstart recipe (tiny built-in model) for two steps, writing into `dir/run`.
fn quickstart(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes/quickstart.toml")).unwrap();
    let data = repo().join("datasets/quickstart");
    let text = text
        .replace("../datasets/quickstart", &data.display().to_string())
        .replace("\"../runs/quickstart\"", "\"run\"");
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn auto_takes_a_gpu_or_falls_back_to_the_cpu_with_a_note_and_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let r = quickstart(tmp.path());
    let set = ["--set", "train.iters=2", "--set", "eval.batches=1", "--set", "checkpoint.every=2"];
    let (out, stdout, stderr) =
        run(auto().arg("train").arg(&r).args(set).args(["--backend", "auto"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("done: 2 steps"), "{stdout}");
    assert!(tmp.path().join("run/adapter/adapter_model.safetensors").is_file());
    let (device, note) = device_lines(&stderr);
    println!("{device}\n{}", note.as_deref().unwrap_or("(no note)"));
    if device.starts_with("device: cpu") {
        // This machine (CI): no GPU. The note is one line and says why.
        let note = note.expect("a note when auto settles for the CPU");
        assert!(note.starts_with("note: no GPU found, running on the CPU: "), "{note}");
        if lavapipe_installed() && cfg!(feature = "wgpu") {
            assert!(note.contains("software rasteriser"), "lavapipe is no GPU: {note}");
        }
    } else {
        // A machine with a GPU: named, no note, and never the software rasteriser.
        assert!(note.is_none(), "{stderr}");
        assert!(
            !device.contains("software rasteriser") && !device.contains("llvmpipe"),
            "{device}"
        );
    }
}

#[cfg(all(target_os = "linux", feature = "wgpu"))]
#[test]
fn auto_without_a_vulkan_driver_runs_on_the_cpu_and_says_why() {
    // `logits` without --model: the built-in tiny model against its transformers reference.
    let (out, stdout, stderr) = run(without_vulkan_drivers(&mut auto()).arg("logits"));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("relative L2"), "{stdout}");
    let (device, note) = device_lines(&stderr);
    assert!(device.starts_with("device: cpu") && device.contains("GiB"), "{device}");
    let note = note.expect(&stderr);
    assert!(note.contains("no Vulkan or DX12 adapter"), "{note}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(all(target_os = "linux", feature = "wgpu"))]
#[test]
fn explicit_wgpu_without_an_adapter_is_one_clear_error() {
    let mut cmd = auto();
    without_vulkan_drivers(&mut cmd).args(["logits", "--backend", "wgpu"]);
    let (out, _, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("--backend wgpu: no Vulkan or DX12 adapter"), "{stderr}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_backend_not_compiled_in_is_one_clear_error() {
    let (out, _, stderr) = run(bin().args(["logits", "--backend", "cuda"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backend `cuda` is not compiled into this binary"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(all(target_os = "linux", feature = "wgpu"))]
#[test]
fn explicit_wgpu_runs_on_lavapipe_where_auto_would_not() {
    if !lavapipe_or_skip() {
        return;
    }
    let (out, stdout, stderr) = run(auto().args(["logits", "--backend", "wgpu"]));
    assert!(out.status.success(), "{stderr}");
    let (device, note) = device_lines(&stderr);
    assert!(device.starts_with("device: wgpu · "), "{device}");
    assert!(note.is_none(), "{stderr}");
    let l2: f64 = stdout
        .lines()
        .find(|l| l.starts_with("relative L2"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect(&stdout);
    assert!(l2 < 1e-4, "{stdout}");
}

/// LoRA's change as one op with its factors' gradients summed over the rows (wgpu's default,
/// gemma4-kernels' `fused/tall.rs`) trains the tiny model on lavapipe as the composed products
/// (`GEMMA4_TUNE_TALL=0`) do: the same losses, step after step, on one repeated batch.
#[cfg(all(target_os = "linux", feature = "wgpu"))]
#[test]
fn tall_lora_gradients_train_as_the_plain_products_do() {
    if !lavapipe_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let losses = |tall: bool| -> (Vec<f64>, u64) {
        let json = tmp.path().join(format!("tall-{tall}.json"));
        let mut cmd = auto();
        if tall {
            cmd.env_remove("GEMMA4_TUNE_TALL"); // the default
        } else {
            cmd.env("GEMMA4_TUNE_TALL", "0");
        }
        let args = ["bench", "--backend", "wgpu", "--model", "tiny", "--dtype", "f32"];
        let shape = ["--batch", "2", "--seq", "48", "--warmup", "0", "--steps", "3"];
        let rest = ["--prefill-runs", "0", "--decode-tokens", "0", "--repeat-batch"];
        let (out, _, stderr) =
            run(cmd.args(args).args(shape).args(rest).args(["--lr", "1e-2", "--json"]).arg(&json));
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("--json written")).expect("JSON");
        let all = report["train"]["loss_all"].as_array().expect("losses").clone();
        let launches = report["kernels"]["tall_products"].as_u64().expect("launch count");
        (all.iter().map(|v| v.as_f64().expect("number")).collect(), launches)
    };
    let ((plain, none), (tall, ran)) = (losses(false), losses(true));
    assert_eq!((none, plain.len()), (0, 3), "the plain products: no tall launches");
    assert!(ran > 0, "the default took the tall products");
    assert!(plain[2] < plain[0], "the repeated batch is learned: {plain:?}");
    for (p, t) in plain.iter().zip(&tall) {
        assert!((p - t).abs() <= 1e-4 * p.abs(), "plain {plain:?} vs tall {tall:?}");
    }
}
