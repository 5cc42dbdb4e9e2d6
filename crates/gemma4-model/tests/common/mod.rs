//! Shared helpers for the golden tests: fixture paths and golden tensors.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::DType;
use burn::tensor::{Device, Tensor};
use gemma4_model::{Gemma4TextModel, NoAdapter, TokenBatch, causal_lm_loss};
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures` at the repository root (written by `tests/reference/generate.py`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub const FIXTURES: &[&str] = &[
    "dense",
    "e2b_like",
    "moe_keqv",
    "keqv_bias_untied",
    "multimodal",
    "per_layer_config",
    "bidirectional",
];

/// The CPU (flex); with the `wgpu` feature and `GEMMA4_TEST_DEVICE=wgpu`, the wgpu device, so
/// the goldens check the GPU path (the fused kernels, flash attention).
pub fn device() -> Device {
    #[cfg(feature = "wgpu")]
    if std::env::var("GEMMA4_TEST_DEVICE").is_ok_and(|v| v == "wgpu") {
        return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    }
    Device::flex()
}

/// A golden tensor: values widened to f64 (ints included) and its shape.
pub struct Golden {
    pub values: Vec<f64>,
    pub shape: Vec<usize>,
}

pub fn load_golden(fixture: &str) -> BTreeMap<String, Golden> {
    let path = fixtures_dir().join(fixture).join("golden.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let d = v.data();
            let values: Vec<f64> = match v.dtype() {
                Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::I64 => d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, Golden { values, shape: v.shape().to_vec() })
        })
        .collect()
}

pub fn batch(g: &Golden, mask: Option<&Golden>) -> TokenBatch {
    let (b, s) = (g.shape[0], g.shape[1]);
    TokenBatch {
        attention_mask: mask
            .map(|m| m.values.chunks(s).map(|r| r.iter().map(|&x| x != 0.0).collect()).collect()),
        ..TokenBatch::new(g.values.iter().map(|&v| v as u32).collect(), b, s)
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().try_to_vec_as::<f32>().unwrap().into_iter().map(f64::from).collect()
}

/// ‖a − b‖ / ‖b‖ over the entries where `keep` is true.
pub fn rel_l2(a: &[f64], b: &[f64], keep: impl Fn(usize) -> bool) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0, 0.0);
    for i in (0..a.len()).filter(|&i| keep(i)) {
        num += (a[i] - b[i]).powi(2);
        den += b[i].powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Compare the embeddings, PLE inputs, every layer output, the final norm, the logits
/// (relative L2 < `tol`) and the loss (relative < `tol`) with a fixture's transformers goldens.
/// Returns the loaded model.
pub fn check_against_goldens(name: &str, tol: f64) -> Gemma4TextModel {
    let golden = load_golden(name);
    let dir = fixtures_dir().join(name);
    let (model, _, _) = Gemma4TextModel::from_dir(&dir, &device(), DType::F32).unwrap();
    let batch = batch(&golden["input_ids"], None);
    let out = model.forward_hidden(&batch, &NoAdapter, true).unwrap();

    let mut checks: Vec<(String, Vec<f64>)> =
        vec![("embeddings".into(), to_vec(out.embeddings.clone().unwrap()))];
    if let Some(p) = out.per_layer_inputs.clone() {
        checks.push(("per_layer_inputs".into(), to_vec(p)));
    }
    for (i, h) in out.layer_outputs.iter().enumerate() {
        checks.push((format!("layer_out.{i}"), to_vec(h.clone())));
    }
    checks.push(("final_norm".into(), to_vec(out.hidden.clone())));
    let logits = model.logits(out.hidden);
    let loss = to_vec(causal_lm_loss(logits.clone(), &batch).unwrap())[0];
    checks.push(("logits".into(), to_vec(logits)));

    for (key, ours) in &checks {
        let want = golden.get(key).unwrap_or_else(|| panic!("{name}: golden has no `{key}`"));
        let err = rel_l2(ours, &want.values, |_| true);
        assert!(
            err < tol,
            "{name}: `{key}` differs from transformers: relative L2 {err:.3e} (first divergence is the first failing key)"
        );
    }
    let want_loss = golden["loss"].values[0];
    assert!(
        ((loss - want_loss) / want_loss).abs() < tol,
        "{name}: loss {loss} vs transformers {want_loss}"
    );
    model
}
