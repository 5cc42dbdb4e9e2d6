//! Checkpoint loading contracts: every tensor used or explicitly dropped, and bad checkpoints
//! fail with a message naming the tensor / key / file.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::DType;
use common::*;
use gemma4_model::{Checkpoint, Gemma4TextConfig, Gemma4TextModel, ParamCounts};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Copy a fixture to a temp dir, letting `edit` rewrite the tensors of `model.safetensors`.
fn edited_copy(
    fixture: &str,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let src = fixtures_dir().join(fixture);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: HashMap<String, TensorView> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match Gemma4TextModel::from_dir(dir, &device(), DType::F32) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir =
        edited_copy("dense", |t| t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight"));
    let e = load_err(dir.path());
    assert!(e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"), "{e}");
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    let dir = edited_copy("dense", |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == "model.layers.0.mlp.up_proj.weight").unwrap();
        assert_ne!(entry.2[0], entry.2[1]);
        entry.2.reverse();
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight")
            && e.contains("expected")
            && e.contains("found"),
        "{e}"
    );
}

#[test]
fn unexpected_tensor_is_an_error_not_silently_ignored() {
    let dir = edited_copy("dense", |t| {
        t.push(("model.layers.0.mlp.extra_proj.weight".into(), Dtype::F32, vec![2], vec![0; 8]))
    });
    let e = load_err(dir.path());
    assert!(e.contains("model.layers.0.mlp.extra_proj.weight"), "{e}");
}

#[test]
fn unsupported_tensor_dtype_is_named() {
    let dir = edited_copy("dense", |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == "model.norm.weight").unwrap();
        entry.1 = Dtype::I32;
    });
    let e = load_err(dir.path());
    assert!(e.contains("model.norm.weight") && e.contains("I32"), "{e}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = edited_copy("dense", |_| {});
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    assert!(load_err(dir.path()).contains("model.safetensors"));
}

#[test]
fn unsupported_config_value_is_named() {
    let dir = edited_copy("dense", |_| {});
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("gelu_pytorch_tanh", "silu");
    std::fs::write(&cfg, text).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("hidden_activation") && e.contains("silu"), "{e}");
}

#[test]
fn missing_checkpoint_files_name_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures_dir().join("dense/config.json"), dir.path().join("config.json"))
        .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains(&dir.path().display().to_string()),
        "{e}"
    );
}

/// The multimodal fixture holds a stray `consolidated.safetensors` and vision/audio towers:
/// only the index's shards are read and the towers are dropped by rule.
#[test]
fn sharded_checkpoint_reads_only_indexed_files_and_drops_towers() {
    let ckpt = Checkpoint::open(&fixtures_dir().join("multimodal")).unwrap();
    assert!(
        ckpt.tensors
            .keys()
            .all(|n| ckpt.file_of(n).unwrap().file_name().unwrap() != "consolidated.safetensors")
    );
    let cfg =
        Gemma4TextConfig::from_file(&fixtures_dir().join("multimodal/config.json")).unwrap().config;
    let (_, report) = Gemma4TextModel::load(cfg, &ckpt, &device(), DType::F32).unwrap();
    assert!(!report.dropped.is_empty());
    assert!(report.dropped.iter().all(|n| n.starts_with("model.vision_tower.")
        || n.starts_with("model.audio_tower.")
        || n.starts_with("model.embed_")));
}

/// Early exports carried k/v/k_norm for KV-shared layers; they are dropped, nothing else is.
#[test]
fn kv_shared_layer_projections_are_dropped() {
    let dir = fixtures_dir().join("e2b_like");
    let (model, report, _) = Gemma4TextModel::from_dir(&dir, &device(), DType::F32).unwrap();
    let first = model.config.first_kv_shared_layer();
    assert!(!report.dropped.is_empty());
    for n in &report.dropped {
        let layer: usize = n.split('.').nth(2).unwrap().parse().unwrap();
        assert!(
            layer >= first
                && (n.contains("k_proj") || n.contains("v_proj") || n.contains("k_norm")),
            "{n}"
        );
    }
    assert!(model.layers[first..].iter().all(|l| l.self_attn.kv.is_none()));
}

/// `inspect`'s counts equal the number of values the checkpoint stores for the text model.
#[test]
fn parameter_counts_match_checkpoint_contents() {
    for name in FIXTURES {
        let dir = fixtures_dir().join(name);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let cfg = Gemma4TextConfig::from_file(&dir.join("config.json")).unwrap().config;
        let counts = ParamCounts::from_config(&cfg);
        let (_, report) = Gemma4TextModel::load(cfg, &ckpt, &device(), DType::F32).unwrap();
        let stored: usize = ckpt
            .tensors
            .iter()
            .filter(|(n, _)| !report.dropped.contains(n))
            .map(|(_, t)| t.shape.iter().product::<usize>())
            .sum();
        assert_eq!(counts.total, stored, "{name}");
        assert!(counts.active_per_token <= counts.total);
    }
}

/// `config_minimal.json` drops every key equal to its HF default (no layer_types, no
/// rope_parameters, ...): our defaults must rebuild the same network.
#[test]
fn minimal_config_resolves_with_hf_defaults() {
    let dir = fixtures_dir().join("per_layer_config");
    let a = Gemma4TextConfig::from_file(&dir.join("config.json")).unwrap().config;
    let b = Gemma4TextConfig::from_file(&dir.join("config_minimal.json")).unwrap().config;
    assert_eq!(a.layers, b.layers);
    assert_eq!(a.rope_parameters, b.rope_parameters);
    assert_eq!(
        (a.sliding_window, a.final_logit_softcapping, a.vocab_size_per_layer_input),
        (b.sliding_window, b.final_logit_softcapping, b.vocab_size_per_layer_input)
    );
}

/// `weights::expected_tensors` lists exactly what every fixture stores (minus dropped tensors).
#[test]
fn expected_tensors_match_every_fixture() {
    for name in FIXTURES {
        let dir = fixtures_dir().join(name);
        let ckpt = Checkpoint::open(&dir).unwrap();
        let cfg = Gemma4TextConfig::from_file(&dir.join("config.json")).unwrap().config;
        let prefix = if cfg.multimodal { "model.language_model." } else { "model." };
        let (_, report) = Gemma4TextModel::load(cfg.clone(), &ckpt, &device(), DType::F32).unwrap();
        let stored: std::collections::BTreeMap<String, Vec<usize>> = ckpt
            .tensors
            .iter()
            .filter(|(n, _)| !report.dropped.contains(n))
            .map(|(n, t)| (n.clone(), t.shape.clone()))
            .collect();
        let expected: std::collections::BTreeMap<String, Vec<usize>> =
            gemma4_model::expected_tensors(&cfg, prefix).into_iter().collect();
        assert_eq!(stored, expected, "{name}");
    }
}

/// The older `global_head_dim` spelling (hand-written next to the dense fixture) gives the
/// same network as the `per_layer_config` transformers 5.24 writes.
#[test]
fn both_config_spellings_resolve_to_the_same_layers() {
    for name in ["dense", "moe_keqv"] {
        let dir = fixtures_dir().join(name);
        let a = Gemma4TextConfig::from_file(&dir.join("config.json")).unwrap().config;
        let b = Gemma4TextConfig::from_file(&dir.join("config_alt_spelling.json")).unwrap().config;
        assert_eq!(a.layers, b.layers, "{name}");
    }
}
