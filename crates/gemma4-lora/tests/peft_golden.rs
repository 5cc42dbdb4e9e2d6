//! Contract tests against Hugging Face PEFT 0.21.2 (`tests/reference/peft_goldens.py`): PEFT's
//! adapters, loaded here, give PEFT's logits, loss and LoRA gradients (experts included); a
//! fresh adapter is the identity; targets select exactly the modules PEFT adapted; PEFT files
//! round-trip losslessly.

use std::collections::BTreeSet;
use std::path::PathBuf;

use burn::tensor::{DType, Device, Tensor};
use gemma4_lora::{LoraAdapter, init_adapter, peft_io};
use gemma4_model::{Gemma4TextModel, NoAdapter, TokenBatch, causal_lm_loss};
use safetensors::SafeTensors;

const FIXTURES: &[&str] = &[
    "dense",
    "e2b_like",
    "moe_keqv",
    "keqv_bias_untied",
    "multimodal",
    "per_layer_config",
    "bidirectional",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn golden(name: &str) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(fixture(name).join("peft/golden.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let d = v.data();
            let vals = match v.dtype() {
                safetensors::Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                _ => d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
            };
            (k, v.shape().to_vec(), vals)
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().try_to_vec_as::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

fn load_model(name: &str, device: &Device) -> Gemma4TextModel {
    Gemma4TextModel::from_dir(&fixture(name), device, DType::F32).unwrap().0
}

#[test]
fn peft_adapters_give_peft_logits_loss_and_gradients() {
    let device = Device::flex().autodiff();
    for name in FIXTURES {
        let model = load_model(name, &device);
        let mut adapter = peft_io::load(&fixture(name).join("peft"), &model).unwrap();
        adapter.map_tensors(|_, t| t.require_grad());
        let gold = golden(name);
        let get =
            |k: &str| gold.iter().find(|g| g.0 == k).unwrap_or_else(|| panic!("{name}: no {k}"));
        let ids = get("input_ids");
        let batch = TokenBatch::new(ids.2.iter().map(|&v| v as u32).collect(), ids.1[0], ids.1[1]);
        let logits = model.logits(model.forward_hidden(&batch, &adapter, false).unwrap().hidden);
        let loss = causal_lm_loss(logits.clone(), &batch).unwrap();
        let grads = loss.backward();
        let err = rel_l2(&values(logits), &get("lora_logits").2);
        assert!(err < 1e-4, "{name}: lora logits relative L2 {err:.3e}");
        let (l, want) = (values(loss)[0], get("lora_loss").2[0]);
        assert!(((l - want) / want).abs() < 1e-5, "{name}: loss {l} vs PEFT {want}");
        let mut checked = 0;
        for (key, t) in adapter.tensors() {
            let g =
                values(t.grad(&grads).unwrap_or_else(|| panic!("{name}: no gradient for {key}")));
            let want = get(&format!("grad.{key}"));
            let err = rel_l2(&g, &want.2);
            assert!(err < 1e-3, "{name}: gradient of {key}: relative L2 {err:.3e}");
            checked += 1;
        }
        let expected = gold.iter().filter(|g| g.0.starts_with("grad.")).count();
        assert_eq!(checked, expected, "{name}: every PEFT gradient is compared");
    }
}

#[test]
fn targets_select_exactly_the_modules_peft_adapted() {
    let device = Device::flex();
    for name in FIXTURES {
        let model = load_model(name, &device);
        let peft = peft_io::load(&fixture(name).join("peft"), &model).unwrap();
        let ours = init_adapter(&model, &peft.config, 0).unwrap();
        let shapes = |a: &LoraAdapter| {
            a.tensors().into_iter().map(|(k, t)| (k, t.dims().to_vec())).collect::<BTreeSet<_>>()
        };
        assert_eq!(shapes(&ours), shapes(&peft), "{name}");
    }
}

#[test]
fn fresh_adapter_is_identity() {
    let device = Device::flex();
    let model = load_model("moe_keqv", &device);
    let peft = peft_io::load(&fixture("moe_keqv").join("peft"), &model).unwrap();
    let fresh = init_adapter(&model, &peft.config, 7).unwrap();
    let batch = TokenBatch::new((0..12).map(|i| 3 + i * 7).collect(), 1, 12);
    let base =
        values(model.logits(model.forward_hidden(&batch, &NoAdapter, false).unwrap().hidden));
    let adapted = values(model.logits(model.forward_hidden(&batch, &fresh, false).unwrap().hidden));
    assert_eq!(base, adapted);
    // PEFT's Kaiming-uniform bound for A: 1/sqrt(in).
    for m in fresh.modules.values() {
        let bound = 1.0 / (m.lora_a.dims()[1] as f64).sqrt();
        assert!(values(m.lora_a.clone()).iter().all(|v| v.abs() <= bound));
        assert!(values(m.lora_b.clone()).iter().all(|&v| v == 0.0));
    }
}

#[test]
fn peft_roundtrip_is_lossless() {
    let device = Device::flex();
    for name in ["moe_keqv", "multimodal"] {
        let model = load_model(name, &device);
        let peft = peft_io::load(&fixture(name).join("peft"), &model).unwrap();
        let dir = tempfile::tempdir().unwrap();
        peft_io::save(&peft, dir.path()).unwrap();
        let back = peft_io::load(dir.path(), &model).unwrap();
        assert_eq!(back.config.scale(), peft.config.scale());
        let (a, b) = (peft.tensors(), back.tensors());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, t) in a {
            assert_eq!(values(t), values(b[&k].clone()), "{name}: {k}");
        }
    }
}

#[test]
fn adapter_for_another_layout_is_an_error_naming_a_key() {
    let device = Device::flex();
    let model = load_model("multimodal", &device);
    // The dense fixture's adapter uses text-only keys (`model.layers…`).
    let e = peft_io::load(&fixture("dense").join("peft"), &model).unwrap_err().to_string();
    assert!(e.contains("base_model.model.model.layers.") && e.contains("hint"), "{e}");
}

/// `fuse` resolves adapters from the config alone: that layout equals the loaded model's.
#[test]
fn layout_from_config_equals_layout_from_model() {
    let device = Device::flex();
    for name in FIXTURES {
        let model = load_model(name, &device);
        let from_model = gemma4_lora::layout::Layout::from_model(&model);
        let from_config =
            gemma4_lora::layout::Layout::from_config(&model.config, model.weight_prefix, &device);
        assert_eq!(from_model.projections, from_config.projections, "{name}");
        assert_eq!(from_model.experts, from_config.experts, "{name}");
    }
}
