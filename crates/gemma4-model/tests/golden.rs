//! Golden tests (llm.c `test_gpt2.c` pattern): our forward against HF transformers 5.24 in f32
//! on tiny random-weight checkpoints covering every architectural switch
//! (`tests/reference/generate.py` writes them). Tolerance: 1e-4 relative L2 for every
//! intermediate and the logits, 1e-4 relative for the loss. Hidden states are compared layer by
//! layer so a failure names the first layer that diverges.

mod common;

use burn::tensor::DType;
use common::*;
use gemma4_model::{Gemma4TextModel, LoadOptions, NoAdapter};

const TOL: f64 = 1e-4;

fn check_fixture(name: &str) {
    check_against_goldens(name, TOL);
}

#[test]
fn dense_sliding_full_gqa_softcap_matches_transformers() {
    check_fixture("dense");
}

#[test]
fn e2b_like_ple_kv_sharing_double_wide_bf16_matches_transformers() {
    check_fixture("e2b_like");
}

#[test]
fn moe_with_k_eq_v_matches_transformers() {
    check_fixture("moe_keqv");
}

#[test]
fn k_eq_v_attention_bias_untied_head_rope_factor_f16_matches_transformers() {
    check_fixture("keqv_bias_untied");
}

#[test]
fn multimodal_sharded_checkpoint_matches_transformers() {
    check_fixture("multimodal");
}

#[test]
fn per_layer_config_spelling_matches_transformers() {
    check_fixture("per_layer_config");
}

/// Weights cut into uneven device pieces along their first axis, as large ones load (the 31B f16
/// embedding, E4B's f32 head, 26B-A4B's f32 expert stacks): transformers' logits still. Lookups
/// cross piece boundaries, the head's pieces are concatenated in vocabulary order, experts are
/// found in their group. A tied head, an untied one, and MoE.
#[test]
fn weights_in_pieces_match_transformers() {
    for name in ["e2b_like", "keqv_bias_untied", "moe_keqv"] {
        let golden = load_golden(name);
        let (mut model, _, _) =
            Gemma4TextModel::from_dir(&fixtures_dir().join(name), &device(), DType::F32).unwrap();
        let v = model.config.vocab_size;
        model.embed_tokens = model.embed_tokens.split_rows(v / 5 + 3).unwrap();
        model.lm_head = model.lm_head.split_rows(v / 3 + 1).unwrap();
        assert!(
            model.embed_tokens.pieces.len() >= 5 && model.lm_head.pieces.len() >= 3,
            "{name}: the test must use several pieces"
        );
        for layer in &mut model.layers {
            if let Some(moe) = layer.moe.take() {
                let n = moe.experts.gate_up_dims()[0];
                let experts = moe.experts.split_experts(n - 1).unwrap(); // uneven: [n - 1, 1]
                assert_eq!(experts.gate_up_proj.len(), 2, "{name}: two expert groups");
                layer.moe = Some(gemma4_model::MoeBlock { experts, ..moe });
            }
        }
        let hidden = model
            .forward_hidden(&batch(&golden["input_ids"], None), &NoAdapter, false)
            .unwrap()
            .hidden;
        let err = rel_l2(&to_vec(model.logits(hidden)), &golden["logits"].values, |_| true);
        assert!(err < TOL, "{name}: logits with the weights in pieces, relative L2 {err:.3e}");
    }
}

/// The loader cuts by the load's piece limit: a limit below the vocabulary matrices and the
/// expert stacks loads them in several pieces, the model reports the limit it was loaded with,
/// and the logits are transformers' still.
#[test]
fn a_low_piece_limit_loads_in_pieces_that_match_transformers() {
    for name in ["e2b_like", "keqv_bias_untied", "moe_keqv"] {
        let golden = load_golden(name);
        let dir = fixtures_dir().join(name);
        let (whole, _, _) = Gemma4TextModel::from_dir(&dir, &device(), DType::F32).unwrap();
        assert_eq!(whole.piece_bytes(), gemma4_model::MAX_PIECE_BYTES);
        let bytes = whole.embed_tokens.pieces[0].dims().iter().product::<usize>() * 4 / 3;
        let options = LoadOptions::new(DType::F32).with_piece_bytes(bytes);
        let (model, _, _) = Gemma4TextModel::from_dir_with(&dir, &device(), options).unwrap();
        assert_eq!(model.piece_bytes(), bytes);
        assert!(
            model.embed_tokens.pieces.len() >= 3 && model.lm_head.pieces.len() >= 3,
            "{name}: pieces"
        );
        let hidden = model
            .forward_hidden(&batch(&golden["input_ids"], None), &NoAdapter, false)
            .unwrap()
            .hidden;
        let err = rel_l2(&to_vec(model.logits(hidden)), &golden["logits"].values, |_| true);
        assert!(
            err < TOL,
            "{name}: logits loaded in pieces of {bytes} bytes, relative L2 {err:.3e}"
        );
    }
}

/// Right padding: logits at real positions equal HF's with the same `attention_mask`.
#[test]
fn right_padded_batch_matches_transformers_at_real_positions() {
    for name in FIXTURES {
        let golden = load_golden(name);
        let (model, _, _) =
            Gemma4TextModel::from_dir(&fixtures_dir().join(name), &device(), DType::F32).unwrap();
        let mask = &golden["pad_attention_mask"];
        let batch = batch(&golden["pad_input_ids"], Some(mask));
        let hidden = model.forward_hidden(&batch, &NoAdapter, false).unwrap().hidden;
        let ours = to_vec(model.logits(hidden));
        let v = model.config.vocab_size;
        let err = rel_l2(&ours, &golden["pad_logits"].values, |i| mask.values[i / v] != 0.0);
        assert!(err < TOL, "{name}: padded logits relative L2 {err:.3e}");
    }
}

#[test]
fn bidirectional_attention_all_matches_transformers() {
    check_fixture("bidirectional");
}

/// Packing: two samples in one row, with restarted positions and segment masks, give each
/// sample's own logits (checked against the unpacked forward on the same model).
#[test]
fn packed_samples_do_not_see_each_other() {
    let golden = load_golden("e2b_like");
    let (model, _, _) =
        Gemma4TextModel::from_dir(&fixtures_dir().join("e2b_like"), &device(), DType::F32).unwrap();
    let ids: Vec<u32> = golden["input_ids"].values.iter().map(|&v| v as u32).collect();
    let s = golden["input_ids"].shape[1];
    let (n0, n1) = (s / 2, s - s / 2);
    let packed_ids: Vec<u32> = ids[..n0].iter().chain(&ids[s..s + n1]).copied().collect();
    let segments = vec![(0..s).map(|t| if t < n0 { 0 } else { 1 }).collect::<Vec<u32>>()];
    let positions =
        vec![(0..s).map(|t| if t < n0 { t as u32 } else { (t - n0) as u32 }).collect::<Vec<u32>>()];
    let packed = gemma4_model::TokenBatch {
        segments: Some(segments),
        positions: Some(positions),
        ..gemma4_model::TokenBatch::new(packed_ids, 1, s)
    };
    let packed_logits =
        to_vec(model.logits(model.forward_hidden(&packed, &NoAdapter, false).unwrap().hidden));
    let v = model.config.vocab_size;
    for (row, start, n) in [(0usize, 0usize, n0), (1, n0, n1)] {
        let single = gemma4_model::TokenBatch::new(ids[row * s..row * s + n].to_vec(), 1, n);
        let want =
            to_vec(model.logits(model.forward_hidden(&single, &NoAdapter, false).unwrap().hidden));
        let got = &packed_logits[start * v..(start + n) * v];
        assert!(rel_l2(got, &want, |_| true) < 1e-5, "packed sample {row}");
    }
}

/// Prefill + one-token decode steps with the KV cache equal the full no-cache forward, on every
/// fixture (sequences longer than the sliding window: the rotating cache drops old keys; KV-shared
/// layers read their donor's cached K/V). Also a multi-token prefill after a first chunk.
#[test]
fn cached_decoding_equals_the_full_forward() {
    for name in FIXTURES.iter().filter(|n| **n != "bidirectional") {
        let golden = load_golden(name);
        let (model, _, _) =
            Gemma4TextModel::from_dir(&fixtures_dir().join(name), &device(), DType::F32).unwrap();
        let ids: Vec<u32> = golden["input_ids"].values.iter().map(|&v| v as u32).collect();
        let (b, s) = (golden["input_ids"].shape[0], golden["input_ids"].shape[1]);
        let want = to_vec(
            model.logits(
                model
                    .forward_hidden(&batch(&golden["input_ids"], None), &NoAdapter, false)
                    .unwrap()
                    .hidden,
            ),
        );
        let v = model.config.vocab_size;
        let mut cache = gemma4_model::KvCache::new(&model.config);
        let mut got = vec![0.0; b * s * v];
        let chunks = [(0usize, 5usize), (5, 4)].into_iter().chain((9..s).map(|t| (t, 1)));
        for (start, n) in chunks {
            let step_ids: Vec<u32> =
                (0..b).flat_map(|r| ids[r * s + start..r * s + start + n].to_vec()).collect();
            let hidden = model
                .forward_cached(
                    &gemma4_model::TokenBatch::new(step_ids, b, n),
                    &mut cache,
                    &NoAdapter,
                )
                .unwrap();
            let l = to_vec(model.logits(hidden));
            for r in 0..b {
                got[(r * s + start) * v..(r * s + start + n) * v]
                    .copy_from_slice(&l[r * n * v..(r + 1) * n * v]);
            }
        }
        assert_eq!(cache.offset, s);
        let err = rel_l2(&got, &want, |_| true);
        assert!(err < 1e-5, "{name}: cached decoding differs from the full forward: {err:.3e}");
    }
}

/// A batch of two equals two batch-1 runs (no cross-talk between rows).
#[test]
fn batch_of_two_equals_two_single_runs() {
    let golden = load_golden("moe_keqv");
    let (model, _, _) =
        Gemma4TextModel::from_dir(&fixtures_dir().join("moe_keqv"), &device(), DType::F32).unwrap();
    let both = to_vec(model.logits(
        model.forward_hidden(&batch(&golden["input_ids"], None), &NoAdapter, false).unwrap().hidden,
    ));
    let s = golden["input_ids"].shape[1];
    let ids: Vec<u32> = golden["input_ids"].values.iter().map(|&v| v as u32).collect();
    let n = both.len() / 2;
    for r in 0..2 {
        let one = gemma4_model::TokenBatch::new(ids[r * s..(r + 1) * s].to_vec(), 1, s);
        let single =
            to_vec(model.logits(model.forward_hidden(&one, &NoAdapter, false).unwrap().hidden));
        assert!(rel_l2(&single, &both[r * n..(r + 1) * n], |_| true) < 1e-6, "row {r}");
    }
}
