//! Adapters written by us load in transformers + PEFT and give our logits: `write_fixtures`
//! (ignored; run with `cargo test -p gemma4-lora --test rust_written -- --ignored`) writes a
//! non-trivial adapter per fixture into `tests/fixtures/<name>/rust_adapter/`;
//! `tests/reference/rust_adapter_goldens.py` loads it with PEFT and writes PEFT's logits next to
//! it; `peft_reproduces_our_logits` compares.

use std::path::PathBuf;

use burn::tensor::{DType, Device, Distribution, Tensor};
use gemma4_lora::{LoraConfig, TargetModules, init_adapter, peft_io};
use gemma4_model::{Gemma4TextModel, TokenBatch};
use safetensors::SafeTensors;

const FIXTURES: &[&str] = &["moe_keqv", "multimodal", "e2b_like"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn config(name: &str, prefix: &str) -> LoraConfig {
    let names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let targets = if prefix.contains("language_model") {
        TargetModules::Regex(
            r".*language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
                .into(),
        )
    } else {
        TargetModules::List(names.iter().map(|s| s.to_string()).collect())
    };
    let mut c = LoraConfig::new(4, 8.0, targets);
    if name == "moe_keqv" {
        c.target_parameters = Some(vec!["experts.gate_up_proj".into(), "experts.down_proj".into()]);
    }
    if name == "e2b_like" {
        c.use_rslora = true;
    }
    c.base_model_name_or_path = Some(format!("tests/fixtures/{name}"));
    c
}

#[test]
#[ignore = "writes fixtures; run on purpose"]
fn write_fixtures() {
    let device = Device::flex();
    for name in FIXTURES {
        let (model, _, _) = Gemma4TextModel::from_dir(&fixture(name), &device, DType::F32).unwrap();
        let mut adapter = init_adapter(&model, &config(name, model.weight_prefix), 1234).unwrap();
        device.seed(99);
        adapter.map_tensors(|key, t| {
            if key.contains("lora_B") {
                Tensor::random(t.shape(), Distribution::Normal(0.0, 0.03), &device)
            } else {
                t
            }
        });
        peft_io::save(&adapter, &fixture(name).join("rust_adapter")).unwrap();
    }
}

#[test]
fn peft_reproduces_our_logits() {
    let device = Device::flex();
    for name in FIXTURES {
        let dir = fixture(name).join("rust_adapter");
        let (model, _, _) = Gemma4TextModel::from_dir(&fixture(name), &device, DType::F32).unwrap();
        let adapter = peft_io::load(&dir, &model).unwrap();
        let bytes = std::fs::read(dir.join("peft_golden.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let ids = st.tensor("input_ids").unwrap();
        let (b, s) = (ids.shape()[0], ids.shape()[1]);
        let ids: Vec<u32> = ids
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        let ours: Vec<f32> = model
            .logits(
                model.forward_hidden(&TokenBatch::new(ids, b, s), &adapter, false).unwrap().hidden,
            )
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        let peft: Vec<f32> = st
            .tensor("lora_logits")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let base: Vec<f32> = st
            .tensor("base_logits")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let rel = |a: &[f32], b: &[f32]| {
            let n: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            let d: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            (n / d).sqrt()
        };
        assert!(
            rel(&ours, &peft) < 1e-4,
            "{name}: PEFT's logits for our adapter differ: {:.3e}",
            rel(&ours, &peft)
        );
        assert!(rel(&base, &peft) > 1e-3, "{name}: the adapter must change the logits");
    }
}
