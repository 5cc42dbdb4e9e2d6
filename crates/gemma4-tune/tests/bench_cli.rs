//! `gemma4-tune bench` on the CPU with the tiny preset: the report has the baseline's keys and
//! sane values, layer recomputation gives the same losses, bad presets fail naming the value.

use std::process::Command;

fn bench(dir: &std::path::Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"))
        .env("GEMMA4_TUNE_BACKEND", "cpu")
        .args([
            "bench",
            "--model",
            "tiny",
            "--batch",
            "2",
            "--seq",
            "24",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--prefill-runs",
            "1",
        ])
        .args([
            "--decode-tokens",
            "3",
            "--prompt",
            "5",
            "--dtype",
            "f32",
            "--backend",
            "cpu",
            "--json",
        ])
        .arg(&json)
        .args(extra)
        .output()
        .expect("run gemma4-tune");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("--json written")).expect("JSON");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(written, printed);
    written
}

#[test]
fn bench_reports_train_prefill_decode_and_flops() {
    let tmp = tempfile::tempdir().unwrap();
    let r = bench(tmp.path(), "plain", &["--profile"]);
    assert_eq!(r["tool"], "gemma4-tune");
    assert_eq!(r["settings"]["batch"], 2);
    assert_eq!(r["settings"]["targets"].as_array().map(|t| t.len()), Some(7));
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!(
        f(&r["train"]["tokens_per_s"]) > 0.0
            && f(&r["prefill"]["tokens_per_s"]) > 0.0
            && f(&r["decode"]["tokens_per_s"]) > 0.0
    );
    assert_eq!(r["train"]["step_s_all"].as_array().map(|t| t.len()), Some(2));
    let phases = r["train"]["phases_s"].as_object().expect("--profile writes phases");
    assert_eq!(
        phases.keys().map(String::as_str).collect::<Vec<_>>(),
        ["backward", "clip + optimizer", "forward", "loss"]
    );
    // The preset has vocab 4096: random tokens give a loss near ln 4096 ≈ 8.32.
    let loss = f(&r["train"]["loss_first"]);
    assert!((loss - 4096f64.ln()).abs() < 0.5, "loss {loss}");
    let (fwd, train, prefill) = (
        f(&r["flops_per_token"]["forward"]),
        f(&r["flops_per_token"]["train"]),
        f(&r["flops_per_token"]["prefill"]),
    );
    assert!(prefill < fwd && 2.0 * fwd < train && train < 3.0 * fwd, "{fwd} {train} {prefill}");
    // Parameter and LoRA counts of the tiny preset (the same numbers bench_peft.py computes from transformers).
    assert_eq!(r["params"]["total"], 948_390);
    assert_eq!(r["params"]["trainable"], 107_008);

    let ck = bench(tmp.path(), "recompute", &["--gradient-checkpointing"]);
    let (a, b) =
        (r["train"]["loss_all"].as_array().unwrap(), ck["train"]["loss_all"].as_array().unwrap());
    for (x, y) in a.iter().zip(b) {
        assert!((f(x) - f(y)).abs() < 1e-4, "recomputation changed the losses: {a:?} vs {b:?}");
    }
}

#[test]
fn bench_with_an_unknown_preset_fails_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"))
        .args(["bench", "--model", "e9z", "--backend", "cpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("e9z") && err.contains("e2b"), "{err}");
}

/// A reduced-precision run tracks the f32 run: one batch every step (`--repeat-batch`), so the
/// loss falls. f16 starts at loss scale 2¹⁶ and skips the first step(s) whose scaled gradients
/// overflow (the bench runs them as warm-up and counts them); after as many updates, its loss is
/// within 3e-2 of f32's.
#[test]
fn f16_loss_tracks_f32_on_a_repeated_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dtype: &str| -> serde_json::Value {
        let json = tmp.path().join(format!("{dtype}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"))
            .args([
                "bench",
                "--model",
                "tiny",
                "--batch",
                "2",
                "--seq",
                "64",
                "--warmup",
                "0",
                "--steps",
                "10",
                "--prefill-runs",
                "0",
                "--decode-tokens",
                "0",
            ])
            .args([
                "--lr",
                "1e-3",
                "--repeat-batch",
                "--backend",
                "cpu",
                "--dtype",
                dtype,
                "--json",
            ])
            .arg(&json)
            .output()
            .expect("run gemma4-tune");
        assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&std::fs::read(&json).expect("--json written")).expect("JSON")
    };
    let losses = |r: &serde_json::Value| {
        r["train"]["loss_all"]
            .as_array()
            .expect("losses")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect::<Vec<_>>()
    };
    let (r32, r16) = (run("f32"), run("f16"));
    let (a, b) = (losses(&r32), losses(&r16));
    assert_eq!(a.len(), 10);
    assert!(a[9] < a[0] - 0.3, "a repeated batch must be learned: {a:?}");
    assert_eq!(r32["train"]["skipped_steps"], 0);
    assert_eq!(r32["train"]["loss_scale"], 1.0, "no loss scaling in f32");
    assert_eq!(r32["train"]["warmup_steps"], 0, "f32 never overflows: no warm-up added");
    // With no warm-up asked for, f16's overflowing first steps become the warm-up (the report
    // counts them), so its timed steps update; an overflow among the timed steps is skipped.
    let settled = r16["train"]["warmup_steps"].as_u64().expect("warmup_steps") as usize;
    let skipped = r16["train"]["skipped_steps"].as_u64().expect("skipped_steps") as usize;
    assert!(settled + skipped <= 3, "f16 overflowed {settled} + {skipped} steps");
    assert_eq!(b.len(), 10, "ten timed steps after the warm-up");
    assert_eq!(
        r16["train"]["loss_scale"],
        65536.0 / (1u64 << (settled + skipped)) as f64,
        "halved once per overflowing step"
    );
    // Step i's loss is measured before its update, and the warm-up updated nothing: after
    // `skipped` timed skips, f16's step k + skipped has had as many updates as f32's step k.
    for k in 0..a.len() - skipped {
        assert!(
            (a[k] - b[k + skipped]).abs() < 3e-2,
            "f16 left the f32 loss curve (skipped {skipped}): {a:?} vs {b:?}"
        );
    }
}
