//! The training step's gradient paths agree with plain autodiff of the loss: the chunked
//! loss-gradient path (default) and layer-by-layer recomputation (`gradient_checkpointing`) of
//! all layers or only the first ones,
//! on fixtures with KV sharing + PLE + double-wide MLP (e2b_like) and MoE + k_eq_v (moe_keqv),
//! with padding, in f32 on the CPU.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{DType, Device, Distribution, Tensor};
use gemma4_data::Batch;
use gemma4_lora::{LoraAdapter, LoraConfig, TargetModules};
use gemma4_model::Gemma4TextModel;
use gemma4_train::loss::target_loss_sum;
use gemma4_train::step::{Accumulate, Ahead, accumulate_gradients, token_batch};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// Two rows, the second right-padded; targets everywhere but the first token and the padding.
fn batch(vocab: u32) -> Batch {
    let (b, s) = (2, 24);
    let ids: Vec<u32> = (0..b * s).map(|i| (i as u32 * 7919 + 13) % vocab).collect();
    let attention_mask: Vec<bool> = (0..b * s).map(|i| i < s || i % s < 17).collect();
    let target: Vec<bool> = (0..b * s).map(|i| i % s != 0 && attention_mask[i]).collect();
    let target_tokens = target.iter().filter(|t| **t).count();
    Batch {
        ids,
        target,
        batch: b,
        seq: s,
        attention_mask,
        segments: None,
        positions: None,
        target_tokens,
        lines: vec![1, 2],
    }
}

/// Burn's CPU backend has one process-wide RNG (seeded for the random LoRA B below): the tests
/// in this binary take turns, so each draws the same factors on every run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn adapter(model: &Gemma4TextModel) -> LoraAdapter {
    let mut cfg = LoraConfig::new(
        4,
        8.0,
        TargetModules::List(
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
                .map(String::from)
                .to_vec(),
        ),
    );
    if model.config.enable_moe_block {
        cfg.target_parameters =
            Some(vec!["experts.gate_up_proj".into(), "experts.down_proj".into()]);
    }
    let mut a = gemma4_lora::init_adapter(model, &cfg, 3).expect("adapter");
    model.device.seed(5);
    // Non-zero B, so that A gets gradients too.
    a.map_tensors(|key, t| {
        if key.contains("lora_B") {
            Tensor::random(t.shape(), Distribution::Normal(0.0, 0.05), &t.device())
        } else {
            t
        }
    });
    a.map_tensors(|_, t| t.require_grad());
    a
}

fn rel(a: &Tensor<2>, b: &Tensor<2>) -> f32 {
    let d = (a.clone() - b.clone()).square().sum().into_scalar::<f32>().sqrt();
    d / b.clone().square().sum().into_scalar::<f32>().sqrt().max(1e-12)
}

#[test]
fn chunked_and_recomputed_gradients_equal_plain_autodiff() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["e2b_like", "moe_keqv"] {
        let device = Device::flex().autodiff();
        let (model, _, _) =
            Gemma4TextModel::from_dir(&fixture(name), &device, DType::F32).expect("fixture");
        let mut adapter = adapter(&model);
        let mb = batch(model.config.vocab_size as u32);
        let tokens = mb.target_tokens;

        // Reference: autodiff straight through the whole loss.
        let hidden =
            model.forward_hidden(&token_batch(&mb), &adapter, false).expect("forward").hidden;
        let (sum, _) = target_loss_sum(&model, hidden, &mb.ids, &mb.target);
        let g = sum.clone().div_scalar(tokens as f64).backward();
        let want_loss = sum.into_scalar::<f32>() as f64;
        let want: BTreeMap<String, Tensor<2>> =
            adapter.tensors().into_iter().map(|(k, t)| (k, t.grad(&g).expect("grad"))).collect();

        // The vocabulary matrices and expert stacks in several device pieces (as the 31B f16
        // embedding, E4B's f32 head or 26B-A4B's f32 experts load; `pieces::MAX_PIECE_BYTES`)
        // give the same step.
        let mut split = model.clone();
        split.embed_tokens = model.embed_tokens.clone().split_rows(37).expect("pieces");
        split.lm_head = model.lm_head.clone().split_rows(29).expect("pieces");
        assert!(split.embed_tokens.pieces.len() > 2 && split.lm_head.pieces.len() > 2);
        for layer in &mut split.layers {
            if let Some(moe) = layer.moe.take() {
                let experts = moe.experts.split_experts(3).expect("groups");
                assert!(experts.gate_up_proj.len() > 1);
                layer.moe = Some(gemma4_model::MoeBlock { experts, ..moe });
            }
        }
        for (m, vocab) in [(&model, "one piece"), (&split, "pieces")] {
            // None, all, and between: the first layer only, and half of them (e2b_like: the
            // KV-shared layers above read donors below).
            let n = m.layers.len();
            for recompute_layers in [0, n, 1, n / 2] {
                // PLE rows uploaded ahead (all but one case), and the next batch's after.
                let mut rows = (recompute_layers != n)
                    .then(|| m.upload_ple_rows(&token_batch(&mb)).expect("rows"))
                    .flatten();
                assert_eq!(rows.is_some(), recompute_layers != n && m.ple.is_some());
                let pass = Accumulate { tokens, seed: 9, recompute_layers, loss_scale: 1.0 };
                let ahead = Ahead { rows: &mut rows, next: Some(&mb) };
                let (loss, got) = accumulate_gradients(
                    m,
                    &mut adapter,
                    std::slice::from_ref(&mb),
                    (&pass, ahead),
                    &mut gemma4_train::step::Phases::off(),
                )
                .expect("step");
                let loss = f64::from(loss.into_scalar::<f32>());
                assert_eq!(rows.is_some(), m.ple.is_some(), "the next batch's rows went up");
                let at =
                    format!("{name} recompute_layers={recompute_layers} vocabulary in {vocab}");
                assert!(
                    (loss - want_loss).abs() < 1e-4 * want_loss.abs(),
                    "{at}: loss {loss} vs {want_loss}"
                );
                assert_eq!(got.len(), want.len(), "{at}: every adapter tensor gets a gradient");
                for (key, w) in &want {
                    let e = rel(&got[key], w);
                    assert!(e < 1e-4, "{at}: {key} relative error {e}");
                }
            }
        }
    }
}

/// f16 weights: the gradients of a loss normalised over many tokens (here as if the step had 2²⁰
/// target tokens) fall below f16's range in the backward pass. With the dynamic loss scale the
/// unscaled f16 gradients track the f32 ones; without it they are mostly flushed to zero.
#[test]
fn f16_gradients_with_loss_scaling_track_f32() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use gemma4_train::optim::LossScale;
    let device = Device::flex().autodiff();
    let tokens = 1 << 20;
    let load = |dtype: DType| {
        Gemma4TextModel::from_dir(&fixture("e2b_like"), &device, dtype).expect("fixture").0
    };
    // One adapter (f32 factors) for every run: the device RNG is shared with concurrent tests.
    let base = adapter(&load(DType::F32));
    let grads = |dtype: DType, loss_scale: f64| {
        let model = load(dtype);
        let mut adapter = base.clone();
        let mb = batch(model.config.vocab_size as u32);
        let (_, g) = accumulate_gradients(
            &model,
            &mut adapter,
            std::slice::from_ref(&mb),
            (
                &Accumulate { tokens, seed: 9, recompute_layers: 0, loss_scale },
                Ahead { rows: &mut None, next: None },
            ),
            &mut gemma4_train::step::Phases::off(),
        )
        .expect("step");
        g
    };
    let want = grads(DType::F32, 1.0);
    let mut scaler = LossScale::new(DType::F16);
    let scaled = grads(DType::F16, scaler.scale);
    let parts = gemma4_train::optim::square_sums(&scaled).expect("gradients");
    let factor = gemma4_train::optim::clip_factor(&parts, scaler.scale, 0.0);
    let per = parts.dims()[1];
    let values: Vec<f32> = parts.into_data().iter::<f32>().collect();
    let norm = gemma4_train::optim::global_norm(&gemma4_train::optim::tensor_sums(&values, per));
    scaler.unscale(norm).expect("no overflow at the initial scale");
    let plain = grads(DType::F16, 1.0);
    for (key, w) in &want {
        let e_scaled = rel(&(scaled[key].clone() * factor.clone().reshape([1, 1])), w);
        let e_plain = rel(&plain[key], w);
        assert!(
            e_scaled < 5e-2,
            "{key}: loss-scaled f16 gradient relative error {e_scaled} vs f32"
        );
        assert!(
            e_plain > 2.0 * e_scaled,
            "{key}: the test must exercise f16 underflow (unscaled error {e_plain}, scaled {e_scaled})"
        );
    }
}
