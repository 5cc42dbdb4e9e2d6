//! Helpers shared by the CLI integration tests: the binary, repository paths, running it.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod bad;

/// The `gemma4-tune` binary under test, on the CPU backend unless a test passes `--backend`
/// (`GEMMA4_TUNE_BACKEND=cpu`): the assertions hold on every machine, a GPU's too.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"));
    cmd.env("GEMMA4_TUNE_BACKEND", "cpu");
    cmd
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Run to completion: the output with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run gemma4-tune");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The f32 tensor `name` of a safetensors file.
pub fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    let v = st.tensor(name).unwrap();
    v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Our logits `[T·V]` for `ids` (one row) from the checkpoint `model` (a directory or a GGUF;
/// + `adapter`: `lora_logits`), through `logits --out` in `dir`.
pub fn logits(model: &Path, adapter: Option<&Path>, ids: &[i64], dir: &Path) -> Vec<f32> {
    let input = dir.join("in.safetensors");
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1, ids.len()], &bytes)
            .unwrap();
    safetensors::serialize_to_file([("input_ids", view)], None, &input).unwrap();
    let out = dir.join("out.safetensors");
    let mut cmd = bin();
    cmd.args(["logits", "--model"]).arg(model).arg("--input").arg(&input).arg("--out").arg(&out);
    if let Some(a) = adapter {
        cmd.arg("--adapter").arg(a);
    }
    let (o, _, stderr) = run(&mut cmd);
    assert!(o.status.success(), "{stderr}");
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    f32s(&st, if adapter.is_some() { "lora_logits" } else { "logits" })
}

/// The index of the largest value of a row of logits.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b })
}
