//! Bad model directories, weights files and adapters, through the real binary: each case exits 1
//! with one `error:` line naming the file or tensor and writes nothing (the bad-input matrix of
//! issue 6; `bad_inputs.rs` says what is covered where, docs/robustness.md lists the messages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::bad::*;
use common::*;

/// A copy of the dense fixture (config + weights) whose `model.safetensors` is `weights`.
fn model_copy(root: &Path, name: &str, weights: Option<Vec<u8>>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("dense/config.json"), dir.join("config.json")).unwrap();
    let bytes =
        weights.unwrap_or_else(|| std::fs::read(fixture("dense/model.safetensors")).unwrap());
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir
}

fn join_safetensors(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    [(h.len() as u64).to_le_bytes().as_slice(), &h, data].concat()
}

/// The dense weights with `edit` applied to the header entry of `tensor`.
fn edit_header(tensor: &str, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let bytes = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let (mut header, data) = split_safetensors(&bytes);
    edit(header.get_mut(tensor).unwrap());
    join_safetensors(&header, data)
}

/// The dense weights without `tensor` (a valid file).
fn without_tensor(tensor: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<_> = st.tensors().into_iter().filter(|(n, _)| n != tensor).collect();
    safetensors::serialize(views, None).unwrap()
}

/// (case, model dir, what the error must name)
type Case = (&'static str, PathBuf, Vec<String>);

/// `logits` on each case's model directory must fail cleanly, writing nothing into `root/out`.
fn assert_logits_fails(root: &Path, cases: Vec<Case>) {
    let out_dir = root.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (what, model, needles) in cases {
        let result = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(fixture("dense/golden.safetensors"))
            .arg("--out")
            .arg(out_dir.join("o.safetensors")));
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails_cleanly(what, &result, &needles, &out_dir, &BTreeMap::new());
    }
}

#[test]
fn bad_model_directories_and_weights_fail_naming_the_file_or_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let q = "model.layers.1.self_attn.q_proj.weight";
    let down = "model.layers.0.mlp.down_proj.weight";
    let no_config = model_copy(&models, "no_config", None);
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let cases: Vec<Case> = vec![
        (
            "no config.json",
            no_config.clone(),
            vec![no_config.join("config.json").display().to_string(), "No such file".into()],
        ),
        (
            "missing tensor",
            model_copy(&models, "missing", Some(without_tensor(q))),
            vec![format!("tensor {q} is missing")],
        ),
        (
            "wrong shape",
            model_copy(
                &models,
                "shape",
                Some(edit_header(down, |v| v["shape"] = serde_json::json!([128, 64]))),
            ),
            vec![format!("tensor {down}: expected shape [64, 128], found [128, 64]")],
        ),
        (
            "wrong dtype",
            model_copy(&models, "dtype", Some(edit_header(down, |v| v["dtype"] = "I32".into()))),
            vec![format!("tensor {down}"), "I32".into()],
        ),
    ];
    assert_logits_fails(tmp.path(), cases);
}

#[test]
fn unreadable_weights_files_fail_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let q = "model.layers.1.self_attn.q_proj.weight";
    let full = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let mut lying_length = full.clone();
    lying_length[..8].copy_from_slice(&(full.len() as u64 * 2).to_le_bytes());
    let st = |name: &str| format!("{}", models.join(name).join("model.safetensors").display());
    let cases: Vec<Case> = vec![
        (
            "truncated file",
            model_copy(&models, "truncated", Some(full[..full.len() / 2].to_vec())),
            vec![st("truncated"), "not a readable safetensors file".into()],
        ),
        (
            "header length beyond the file",
            model_copy(&models, "length", Some(lying_length)),
            vec![st("length"), "not a readable safetensors file".into()],
        ),
        (
            "data_offsets past the data",
            model_copy(
                &models,
                "offsets",
                Some(edit_header(q, |v| {
                    v["data_offsets"][1] = (v["data_offsets"][1].as_u64().unwrap() + 4).into()
                })),
            ),
            vec![st("offsets"), "not a readable safetensors file".into()],
        ),
        (
            "data_offsets overlapping",
            model_copy(
                &models,
                "overlap",
                Some(edit_header(q, |v| {
                    v["data_offsets"][0] = (v["data_offsets"][0].as_u64().unwrap() - 4).into()
                })),
            ),
            vec![st("overlap"), "not a readable safetensors file".into()],
        ),
        (
            "empty weights file",
            model_copy(&models, "empty", Some(Vec::new())),
            vec![st("empty"), "not a readable safetensors file".into()],
        ),
    ];
    assert_logits_fails(tmp.path(), cases);
}

#[test]
fn training_on_a_model_without_tokenizer_or_a_missing_dir_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let model = model_copy(tmp.path(), "dense_copy", None); // a fixture: weights, no tokenizer.json
    for (what, path, needles) in [
        (
            "no tokenizer.json",
            model.clone(),
            vec![format!("no tokenizer.json in {}", model.display()), "hint".into()],
        ),
        (
            "no model directory",
            tmp.path().join("no-such-model"),
            vec![format!("{}", tmp.path().join("no-such-model").display())],
        ),
    ] {
        let dir = tmp.path().join(what.replace(' ', "_"));
        let r = recipe(&dir, &data);
        let text = std::fs::read_to_string(&r)
            .unwrap()
            .replace("builtin = \"tiny\"", &format!("path = \"{}\"", path.display()));
        std::fs::write(&r, text).unwrap();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails_cleanly(
            what,
            &run(bin().arg("train").arg(&r).args(["--backend", "cpu"])),
            &needles,
            &dir.join("run"),
            &BTreeMap::new(),
        );
    }
}

#[test]
fn an_adapter_for_another_model_fails_naming_a_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let logits = |adapter: &Path| {
        run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(fixture("dense"))
            .arg("--input")
            .arg(fixture("dense/golden.safetensors"))
            .arg("--adapter")
            .arg(adapter)
            .arg("--out")
            .arg(tmp.path().join("o.safetensors")))
    };
    // e2b_like has other widths: the first factor that does not fit is named with both shapes.
    let result = logits(&fixture("e2b_like/peft"));
    assert_fails_cleanly(
        "e2b_like adapter on dense",
        &result,
        &["adapter_model.safetensors", "base_model.model.model.layers.", "expected shape"],
        tmp.path(),
        &BTreeMap::new(),
    );
    // The multimodal layout: keys that match no module, with the layout hint.
    let result = logits(&fixture("multimodal/peft"));
    assert_fails_cleanly(
        "multimodal adapter on dense",
        &result,
        &["match no module", "language_model", "hint"],
        tmp.path(),
        &BTreeMap::new(),
    );
}
