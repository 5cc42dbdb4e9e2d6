//! CLI integration tests (ripgrep style): run the real binary on the reference fixtures and
//! check exit codes, messages and the files written.

use std::path::PathBuf;

mod common;
use common::*;

fn reported_rel_l2(stdout: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("relative L2")).expect("a relative L2 line");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn read_f32(path: &std::path::Path, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::F32);
    (
        v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        v.shape().to_vec(),
    )
}

#[test]
fn logits_writes_logits_and_loss_matching_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["dense", "moe_keqv", "multimodal"] {
        let out_path = tmp.path().join(format!("{name}.safetensors"));
        let input = fixture(name).join("golden.safetensors");
        let (out, stdout, stderr) = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(fixture(name))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out_path));
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(reported_rel_l2(&stdout) < 1e-4, "{name}: {stdout}");
        let (logits, shape) = read_f32(&out_path, "logits");
        let (reference, ref_shape) = read_f32(&input, "logits");
        assert_eq!(shape, ref_shape);
        assert_eq!(logits.len(), reference.len());
        let (loss, loss_shape) = read_f32(&out_path, "loss");
        let (want, _) = read_f32(&input, "loss");
        assert_eq!(loss_shape, vec![1]);
        assert!(
            ((loss[0] - want[0]) / want[0]).abs() < 1e-4,
            "{name}: loss {} vs {}",
            loss[0],
            want[0]
        );
    }
    // Outputs are renamed into place: no temporary files remain.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn logits_without_model_runs_the_built_in_model() {
    let (out, stdout, stderr) = run(bin().args(["logits", "--backend", "cpu"]));
    assert!(out.status.success(), "{stderr}");
    assert!(reported_rel_l2(&stdout) < 1e-4, "{stdout}");
}

#[test]
fn inspect_prints_layers_donors_and_parameter_counts() {
    let (out, stdout, stderr) = run(bin().args(["inspect", "--model"]).arg(fixture("e2b_like")));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("KV sharing")
            && stdout.contains("kv_donor")
            && stdout.contains("PLE")
            && stdout.contains("parameters"),
        "{stdout}"
    );
    let (out, stdout, _) = run(bin().args(["inspect", "--model"]).arg(fixture("moe_keqv")));
    assert!(out.status.success());
    assert!(stdout.contains("4 experts, top-2") && stdout.contains("active per token"), "{stdout}");
}

#[test]
fn bad_inputs_fail_with_a_named_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.safetensors");
    // Missing model directory.
    let (out, _, stderr) = run(bin()
        .args(["logits", "--backend", "cpu", "--model", "/nonexistent/model", "--input"])
        .arg(fixture("dense").join("golden.safetensors"))
        .arg("--out")
        .arg(&out_path));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/model"), "{stderr}");
    // Input file without input_ids.
    let (out, _, stderr) = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(fixture("dense"))
        .arg("--input")
        .arg(fixture("dense").join("model.safetensors"))
        .arg("--out")
        .arg(&out_path));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("input_ids"), "{stderr}");
    // Unsupported config value (not `gemma3_text`: Gemma 3 is supported since dfc0cb5).
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(fixture("dense").join("model.safetensors"), model.join("model.safetensors"))
        .unwrap();
    let cfg = std::fs::read_to_string(fixture("dense").join("config.json"))
        .unwrap()
        .replace("\"gemma4_text\"", "\"llama\"");
    std::fs::write(model.join("config.json"), cfg).unwrap();
    let (out, _, stderr) = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(fixture("dense").join("golden.safetensors"))
        .arg("--out")
        .arg(&out_path));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("model_type") && stderr.contains("llama"), "{stderr}");
    assert!(!out_path.exists(), "nothing is written on failure");
    // Bad arguments are clap's exit code 2.
    let (out, _, _) = run(bin().args(["logits", "--model", "x"]));
    assert_eq!(out.status.code(), Some(2));
}

/// `inspect` reads a GGUF's metadata (the real Gemma 3 270M, when fetched by
/// tests/reference/fetch_gemma3_270m.sh; skipped otherwise).
#[test]
fn inspect_reads_a_gguf_model() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma3-270m");
    if !dir.join("gemma-3-270m-q4_k_m.gguf").is_file() {
        eprintln!("SKIPPED: {} not fetched (tests/reference/fetch_gemma3_270m.sh)", dir.display());
        return;
    }
    let (out, stdout, stderr) = run(bin().args(["inspect", "--model"]).arg(&dir));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("262144 / 640")
            && stdout.contains("18 (15 sliding, 3 full)")
            && stdout.contains("268.10M"),
        "{stdout}"
    );
}
