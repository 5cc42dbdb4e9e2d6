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

/// A header of one tensor `[0, 2^40, 2^40]` (0 bytes: safetensors multiplies left to right).
fn zero_by_huge() -> serde_json::Map<String, serde_json::Value> {
    let t = serde_json::json!({"dtype": "F32", "shape": [0, 1u64 << 40, 1u64 << 40], "data_offsets": [0, 0]});
    [("model.embed_tokens.weight".to_string(), t)].into_iter().collect()
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
        (
            "a 0-element shape that overflows multiplied right to left (a fuzz finding)",
            model_copy(&models, "zero", Some(join_safetensors(&zero_by_huge(), &[]))),
            vec![st("zero"), "shape [0, 1099511627776, 1099511627776] overflows".into()],
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

// ── Issue 16: sizes and values from a model's files, checked where they enter ──

/// A copy of the dense fixture whose config.json has `edit` applied.
fn config_copy(root: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let dir = model_copy(root, name, None);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    dir
}

/// A GGUF v3 Gemma 3 file (metadata, one F32 `token_embd.weight` of ggml dims `embd`) with
/// `block_count` layers: the header a loader reads before any weight.
fn gguf(dir: &Path, block_count: u32, embd: [u64; 2]) -> PathBuf {
    let string = |s: &str| [&(s.len() as u64).to_le_bytes()[..], s.as_bytes()].concat();
    let mut kv =
        [string("general.architecture"), 8u32.to_le_bytes().to_vec(), string("gemma3")].concat();
    let keys = [
        ("embedding_length", 2u32),
        ("block_count", block_count),
        ("feed_forward_length", 4),
        ("attention.head_count", 1),
        ("attention.head_count_kv", 1),
        ("attention.key_length", 2),
        ("context_length", 8),
    ];
    for (k, v) in keys {
        kv.extend([string(&format!("gemma3.{k}")), 4u32.to_le_bytes().to_vec()].concat());
        kv.extend(v.to_le_bytes());
    }
    let mut bytes = [b"GGUF".as_slice(), &3u32.to_le_bytes(), &1u64.to_le_bytes()].concat();
    bytes.extend((1 + keys.len() as u64).to_le_bytes());
    bytes.extend(kv);
    bytes.extend([string("token_embd.weight"), 2u32.to_le_bytes().to_vec()].concat());
    embd.iter().for_each(|d| bytes.extend(d.to_le_bytes()));
    bytes.extend([0u32.to_le_bytes().as_slice(), &0u64.to_le_bytes()].concat()); // F32, offset 0
    bytes.resize(bytes.len().div_ceil(32) * 32 + 8 * 4, 0);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn huge_sizes_and_bad_values_in_config_or_gguf_fail_naming_the_key_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let cfg = |name: &str| models.join(name).join("config.json").display().to_string();
    let (layers, overflow) = (gguf(&models.join("g1"), 1 << 31, [2, 4]), models.join("g2"));
    let overflow = gguf(&overflow, 1, [1 << 33, 1 << 33]);
    // `token_embd.weight` with 0 dims (a fuzz finding: was an index panic).
    let flat = gguf(&models.join("g3"), 1, [2, 4]);
    let mut b = std::fs::read(&flat).unwrap();
    let at = b.windows(17).position(|w| w == b"token_embd.weight").unwrap() + 17;
    b[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    b.drain(at + 4..at + 20);
    std::fs::write(&flat, b).unwrap();
    let cases: Vec<Case> = vec![
        (
            "huge num_hidden_layers, no layer_types",
            config_copy(&models, "layers", |c| {
                c["num_hidden_layers"] = (1u64 << 40).into();
                c.as_object_mut().unwrap().remove("layer_types");
            }),
            vec![cfg("layers"), "`num_hidden_layers`".into(), "past the limit 1024".into()],
        ),
        (
            "negative rms_norm_eps",
            config_copy(&models, "eps", |c| c["rms_norm_eps"] = (-1.0).into()),
            vec![cfg("eps"), "`rms_norm_eps`".into(), "must be finite and > 0".into()],
        ),
        (
            "negative head_dim",
            config_copy(&models, "neg", |c| c["head_dim"] = (-4).into()),
            vec![cfg("neg"), "`head_dim`".into(), "-4".into()],
        ),
        (
            "GGUF with a huge block_count",
            layers.clone(),
            vec![
                layers.display().to_string(),
                "`gemma3.block_count`".into(),
                "past the limit".into(),
            ],
        ),
        (
            "GGUF tensor whose dimensions overflow",
            overflow.clone(),
            vec![overflow.display().to_string(), "token_embd.weight".into(), "overflow".into()],
        ),
        (
            "GGUF token_embd.weight with 0 dims",
            flat.clone(),
            vec![flat.display().to_string(), "token_embd.weight".into(), "0 dimensions".into()],
        ),
    ];
    assert_logits_fails(tmp.path(), cases);
}

#[test]
fn logits_on_an_empty_batch_fails_naming_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty.safetensors");
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![0, 4], &[]).unwrap();
    std::fs::write(&input, safetensors::serialize([("input_ids", view)], None).unwrap()).unwrap();
    let before = snapshot(tmp.path());
    let result = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(fixture("dense"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(tmp.path().join("o.safetensors")));
    assert_fails_cleanly(
        "input_ids [0, 4]",
        &result,
        &[&input.display().to_string(), "no rows"],
        tmp.path(),
        &before,
    );
}

#[test]
fn fusing_an_adapter_holding_nan_fails_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("peft");
    std::fs::create_dir(&peft).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture("dense/peft").join(f), peft.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(peft.join("adapter_model.safetensors")).unwrap();
    let (header, _) = split_safetensors(&bytes);
    let (name, t) = header.iter().find(|(n, _)| n.contains("lora_B")).unwrap();
    let name = name.clone();
    let at = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = at + t["data_offsets"][0].as_u64().unwrap() as usize;
    assert_eq!(t["dtype"], "F32");
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(peft.join("adapter_model.safetensors"), bytes).unwrap();
    let before = snapshot(tmp.path());
    let result = run(bin()
        .args(["fuse", "--model"])
        .arg(fixture("dense"))
        .arg("--adapter")
        .arg(&peft)
        .arg("--out")
        .arg(tmp.path().join("fused")));
    assert_fails_cleanly(
        "fuse a NaN adapter",
        &result,
        &["adapter_model.safetensors", &format!("tensor {name}"), "not finite"],
        tmp.path(),
        &before,
    );
}
