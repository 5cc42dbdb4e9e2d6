//! Issue 18: GGUF exports against llama.cpp, without llama.cpp at test time. The reference
//! script `tests/reference/gguf_export.py` ran llama.cpp (llama-cpp-python 0.3.36) on our
//! exports of the tiny fixtures and stored its logits, with a hash of each exact file it ran, in
//! `tests/fixtures/gguf_export/llama.safetensors`. Here every export is written again, must be
//! the same bytes, and llama.cpp's logits are compared with two of ours:
//!   - ours: our f32 model on the weights as trained (+ adapter), the model the user has.
//!     Bound: 1e-2, or twice what the format's rounding alone costs our own forward (the next
//!     line), whichever is larger.
//!   - ours on the file's weights: every matrix rounded as the export writes it and decoded by
//!     our dequantiser (`gguf_export/rounded.rs`). What is left is llama.cpp's own arithmetic:
//!     it rounds the activations to the weight type for its dot products (f16 for F16, bf16 for
//!     BF16, Q8_0 blocks for Q8_0 and Q4_0), keeps K/V in f16 and takes GELU from an f16 table.
//!     Bound per type: [`arithmetic_tolerance`].
//!
//! Refusals: nothing written.

use std::path::{Path, PathBuf};

use gemma4_model::gguf_out::ExportQuant;

mod common;
use common::*;
#[path = "gguf_export/rounded.rs"]
mod rounded;
use rounded::{rel_l2, rounded_copy};

/// llama.cpp against our model on the file's own weights (measured: f32 9.8e-4, f16 1.5e-3,
/// bf16 1.2e-2, q8_0 3.3e-2, q4_0 3.9e-2 on the tiny Gemma 4 fixture, the largest).
fn arithmetic_tolerance(quant: &str) -> f64 {
    match quant {
        "f32" | "f16" => 1e-2,
        "bf16" => 2e-2,
        _ => 5e-2, // q8_0, q4_0: activations in Q8_0 blocks
    }
}

/// The export type of a case (`fused_lora_q8_0` → q8_0; the adapter case runs on the f32 base).
fn quant_of(case: &str) -> &str {
    match case {
        "lora_on_f32" => "f32",
        c => c.trim_start_matches("fused_lora_"),
    }
}

/// FNV-1a 64 (the script writes the same hash of each file it ran).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Write the export of `case` for fixture `fx` into `dir`; the file llama.cpp's hash is of.
fn export(fx: &str, case: &str, dir: &Path) -> PathBuf {
    let model = fixture(fx);
    let peft = model.join("peft");
    let (path, mut cmd) = if case == "lora_on_f32" {
        let p = dir.join(format!("{fx}-adapter.gguf"));
        let mut c = bin();
        c.args(["export-adapter", "--model"]).arg(&model).arg("--adapter").arg(&peft);
        (p, c)
    } else {
        let p = dir.join(format!("{fx}-{case}.gguf"));
        let mut c = bin();
        c.args(["fuse", "--quant", quant_of(case), "--model"]).arg(&model);
        if case.starts_with("fused_lora_") {
            c.arg("--adapter").arg(&peft);
        }
        (p, c)
    };
    let (out, _, stderr) = run(cmd.arg("--gguf").arg(&path));
    assert!(out.status.success(), "{fx}/{case}: {stderr}");
    path
}

/// Our logits on the weights the export of `case` holds; `None` where it holds them in f32.
fn file_logits(fx: &str, case: &str, ids: &[i64], dir: &Path) -> Option<Vec<f32>> {
    let quant = ExportQuant::parse(quant_of(case)).unwrap();
    if quant == ExportQuant::F32 {
        return None;
    }
    let mut source = fixture(fx);
    if case.starts_with("fused_lora_") {
        // The merged checkpoint in f32: the weights the fused export rounds.
        source = dir.join(format!("{fx}-{case}-fused"));
        let mut cmd = bin();
        cmd.args(["fuse", "--dtype", "f32", "--force", "--model"])
            .arg(fixture(fx))
            .arg("--adapter")
            .arg(fixture(fx).join("peft"))
            .arg("--out")
            .arg(&source);
        let (o, _, stderr) = run(&mut cmd);
        assert!(o.status.success(), "{fx}/{case}: {stderr}");
    }
    let rounded = dir.join(format!("{fx}-{case}-rounded"));
    rounded_copy(&source, quant, &rounded);
    Some(logits(&rounded, None, ids, dir))
}

/// One case: the export is the file llama.cpp ran, and its logits are within the bounds.
fn check_case(fx: &str, case: &str, hash: &str, st: &safetensors::SafeTensors, dir: &Path) {
    let file = export(fx, case, dir);
    let ours_hash = format!("{:016x}", fnv1a64(&std::fs::read(&file).unwrap()));
    assert_eq!(
        ours_hash, hash,
        "{fx}/{case}: the export changed since llama.cpp ran it (rerun tests/reference/gguf_export.py)"
    );
    let ids: Vec<i64> = st
        .tensor(&format!("{fx}.input_ids"))
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let llama = f32s(st, &format!("{fx}.{case}.logits"));
    let peft = fixture(fx).join("peft");
    let mine = logits(&fixture(fx), case.contains("lora").then_some(peft.as_path()), &ids, dir);
    let on_file = file_logits(fx, case, &ids, dir).unwrap_or_else(|| mine.clone());
    let (total, format, arith) =
        (rel_l2(&llama, &mine), rel_l2(&on_file, &mine), rel_l2(&llama, &on_file));
    let quant = quant_of(case);
    eprintln!(
        "{fx}/{case}: llama.cpp vs ours {total:.3e}, format alone {format:.3e}, \
         llama.cpp vs ours on the file's weights {arith:.3e}"
    );
    let tol = arithmetic_tolerance(quant);
    assert!(
        arith <= tol,
        "{fx}/{case}: llama.cpp vs ours on the file's weights {arith:.3e} > {tol:e}"
    );
    let tol = (2.0 * format).max(1e-2);
    assert!(total <= tol, "{fx}/{case}: llama.cpp vs ours {total:.3e} > {tol:.3e}");
    // Same argmax everywhere where the weights keep f16 precision or better.
    if matches!(quant, "f32" | "f16") {
        let v = mine.len() / ids.len();
        for (t, (a, b)) in llama.chunks(v).zip(mine.chunks(v)).enumerate() {
            assert_eq!(argmax(a), argmax(b), "{fx}/{case}: argmax at position {t}");
        }
    }
}

#[test]
fn exports_match_llama_cpp_logits_on_the_fixtures() {
    let gold = repo().join("tests/fixtures/gguf_export/llama.safetensors");
    let bytes = std::fs::read(&gold).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hashes = meta.metadata().clone().unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (key, hash) in hashes.iter().filter(|(k, _)| k.ends_with(".fnv1a64")) {
        let (fx, case) = key.trim_end_matches(".fnv1a64").split_once('.').unwrap();
        check_case(fx, case, hash, &st, dir.path());
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} cases in {}", gold.display());
}

#[test]
fn unrepresentable_models_and_types_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    for (model, quant, needle) in [
        ("keqv_bias_untied", "f16", "attention_bias"),
        ("moe_keqv", "f16", "enable_moe_block"),
        ("dense", "q3_k", "q8_0"),
    ] {
        let mut cmd = bin();
        cmd.args(["fuse", "--quant", quant, "--model"]).arg(fixture(model)).arg("--gguf").arg(&out);
        let (o, _, stderr) = run(&mut cmd);
        assert_eq!(o.status.code(), Some(1), "{model}: {stderr}");
        assert!(stderr.contains(needle), "{model}: {stderr}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{model}: wrote something"
        );
    }
    // Never over an input.
    let model = fixture("dense").join("model.safetensors");
    let mut cmd = bin();
    cmd.args(["fuse", "--model"]).arg(fixture("dense")).arg("--gguf").arg(&model).arg("--force");
    let (o, _, stderr) = run(&mut cmd);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing to write over an input"), "{stderr}");
}
