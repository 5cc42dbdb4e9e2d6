//! Gemma 3 text through the Gemma 4 model code, switched by config values only: golden tests
//! against transformers 5.24 `Gemma3ForCausalLM` (f32, eager) on the tiny fixtures written by
//! `tests/reference/gemma3_goldens.py`. Same tolerances as `golden.rs`: 1e-4 relative L2 for
//! every layer output and the logits, 1e-4 relative for the loss.

mod common;

use burn::tensor::DType;
use common::*;
use gemma4_model::{Gemma4TextConfig, Gemma4TextModel, LayerType, NoAdapter};

const TOL: f64 = 1e-4;

fn check_fixture(name: &str) {
    let (_, report, warnings) =
        Gemma4TextModel::from_dir(&fixtures_dir().join(name), &device(), DType::F32).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
    let model = check_against_goldens(name, TOL);
    let golden = load_golden(name);

    // Right padding: real positions equal HF's.
    let mask = &golden["pad_attention_mask"];
    let padded = common::batch(&golden["pad_input_ids"], Some(mask));
    let ours =
        to_vec(model.logits(model.forward_hidden(&padded, &NoAdapter, false).unwrap().hidden));
    let v = model.config.vocab_size;
    let err = rel_l2(&ours, &golden["pad_logits"].values, |i| mask.values[i / v] != 0.0);
    assert!(err < TOL, "{name}: padded logits relative L2 {err:.3e}");
}

/// Sliding + full layers (last one sliding: Gemma 3 does not force it), linear RoPE ×8 on full
/// layers, local base on sliding ones, `query_pre_attn_scalar` 24 ≠ head_dim, GQA, tied head.
#[test]
fn gemma3_dense_sliding_full_linear_rope_matches_transformers() {
    check_fixture("gemma3_dense");
}

/// `rope_parameters` spelling, untied head, attention biases, final softcap, bf16 on disk.
#[test]
fn gemma3_untied_bias_softcap_bf16_matches_transformers() {
    check_fixture("gemma3_untied");
}

/// The legacy keys real Gemma 3 configs carry (`rope_theta`, `rope_local_base_freq`,
/// `rope_scaling`, `sliding_window_pattern`, no `layer_types`) resolve to the same config.
#[test]
fn gemma3_legacy_config_spelling_resolves_identically() {
    let dir = fixtures_dir().join("gemma3_dense");
    let new = Gemma4TextConfig::from_file(&dir.join("config.json")).unwrap().config;
    let old = Gemma4TextConfig::from_file(&dir.join("config_legacy.json")).unwrap().config;
    assert_eq!(new, old);
    let types: Vec<_> = new.layers.iter().map(|l| l.layer_type).collect();
    use LayerType::{Full, Sliding};
    assert_eq!(types, [Sliding, Sliding, Full, Sliding, Sliding]);
    assert_eq!(new.rope_parameters[&Full].rope_type, "linear");
    assert_eq!(new.rope_parameters[&Full].factor, 8.0);
    assert_eq!(new.rope_parameters[&Sliding].rope_theta, 100.0);
    assert_eq!((new.norm_weight_offset, new.v_norm, new.layer_scalar), (1.0, false, false));
    assert!((new.attention_scale - 24f64.powf(-0.5)).abs() < 1e-15);
}

/// KV-cached decoding equals the full forward on Gemma 3 too (rotating sliding cache).
#[test]
fn gemma3_cached_decoding_equals_the_full_forward() {
    let golden = load_golden("gemma3_dense");
    let (model, _, _) =
        Gemma4TextModel::from_dir(&fixtures_dir().join("gemma3_dense"), &device(), DType::F32)
            .unwrap();
    let ids: Vec<u32> = golden["input_ids"].values.iter().map(|&v| v as u32).collect();
    let (b, s) = (golden["input_ids"].shape[0], golden["input_ids"].shape[1]);
    let want = to_vec(model.logits(
        model.forward_hidden(&batch(&golden["input_ids"], None), &NoAdapter, false).unwrap().hidden,
    ));
    let v = model.config.vocab_size;
    let mut cache = gemma4_model::KvCache::new(&model.config);
    let mut got = vec![0.0; b * s * v];
    for (start, n) in [(0usize, 7usize)].into_iter().chain((7..s).map(|t| (t, 1))) {
        let step: Vec<u32> =
            (0..b).flat_map(|r| ids[r * s + start..r * s + start + n].to_vec()).collect();
        let l = to_vec(
            model.logits(
                model
                    .forward_cached(
                        &gemma4_model::TokenBatch::new(step, b, n),
                        &mut cache,
                        &NoAdapter,
                    )
                    .unwrap(),
            ),
        );
        for r in 0..b {
            got[(r * s + start) * v..(r * s + start + n) * v]
                .copy_from_slice(&l[r * n * v..(r + 1) * n * v]);
        }
    }
    assert!(rel_l2(&got, &want, |_| true) < 1e-5);
}

#[test]
fn gemma3_attn_softcap_is_a_clear_error() {
    let mut j: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("gemma3_dense/config.json")).unwrap(),
    )
    .unwrap();
    j["attn_logit_softcapping"] = serde_json::json!(50.0);
    let e = Gemma4TextConfig::from_json(&j).unwrap_err().to_string();
    assert!(e.contains("attn_logit_softcapping"), "{e}");
}
