//! The memory plan against peaks measured on an NVIDIA H200 (docs/performance.md, CUDA, bf16,
//! LoRA r 16 on q/k/v/o/gate/up/down, nvidia-smi), the `auto` choices, and the refusal of a run
//! that cannot fit.

use std::path::PathBuf;

use gemma4_lora::{LoraConfig, TargetModules};
use gemma4_model::{Gemma4TextConfig, WeightDtype};
use gemma4_train::plan::{DeviceFacts, MemoryPlan, PlanInput, estimate, estimate_layers};
use gemma4_train::recipe::Recompute;

fn preset(name: &str) -> Gemma4TextConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../gemma4-tune/presets/{name}.json"));
    Gemma4TextConfig::from_file(&p).expect("preset").config
}

fn h200() -> DeviceFacts {
    DeviceFacts {
        backend: "cuda".into(),
        gpu: true,
        bf16: true,
        memory: Some(143_771 << 20),
        memory_source: "cuDeviceTotalMem".into(),
        piece_bytes: 1 << 30,
        bf16_lora_inputs: false,
        low_rank_add_rank: None,
        flash: false,
    }
}

/// The H200 as the CUDA build sees it today: the adapter reads bf16 activations as they are
/// (`gemma4_kernels::bf16_lora_inputs`), and weights load in pieces of CubeCL's largest page
/// (a quarter of the memory: `gemma4_model::piece_limit`).
fn h200_today() -> DeviceFacts {
    let memory = 143_771usize << 20;
    DeviceFacts { piece_bytes: memory / 4, bf16_lora_inputs: true, ..h200() }
}

fn input(batch: usize, dtype: WeightDtype) -> PlanInput {
    let seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let lora = LoraConfig::new(16, 32.0, TargetModules::List(seven.map(String::from).to_vec()));
    PlanInput { batch, seq: 2048, dtype, lora }
}

const GIB: f64 = (1u64 << 30) as f64;

/// nvidia-smi's peak in use over a `bench` run (warm-up 1, 2 steps; `tests/reference/
/// bench_compare.sh`, 3 s apart), CUDA bf16, commit b72a1b4, 2026-12-02: two batch sizes of E2B
/// and E4B, with and without recomputation.
#[test]
fn estimates_are_within_15_percent_of_the_peaks_measured_on_an_h200() {
    // (preset, batch, recomputation, measured GiB)
    let today = [
        ("e2b", 2, false, 25.41),
        ("e2b", 2, true, 8.11),
        ("e2b", 4, false, 42.70),
        ("e2b", 4, true, 8.86),
        ("e4b", 2, false, 36.91),
        ("e4b", 2, true, 13.12),
        ("e4b", 4, false, 62.69),
        ("e4b", 4, true, 15.62),
    ];
    // Earlier (2026-12-02, before the bf16 adapter inputs and the CUDA-sized pieces; the f32
    // input copies are still what `GEMMA4_TUNE_LORA_INPUTS=f32` runs).
    let f32_inputs = [
        ("e2b", 4, true, 9.6),
        ("e2b", 4, false, 50.2),
        ("e4b", 2, true, 14.6),
        ("e4b", 2, false, 44.7),
    ];
    // With flash attention (`GEMMA4_TUNE_FLASH=1`), same day, commit 78ddb1f (one device call;
    // batch 1 at 2,048, 8,192 and 32,768 tokens: memory linear in the sequence).
    let flash = [
        ("e2b", 1, false, 14.13),
        ("e2b", 1, false, 35.18),
        ("e2b", 1, false, 120.09),
        ("e2b", 4, false, 36.43),
        ("e2b", 4, true, 10.11),
        ("e4b", 2, false, 31.90),
        ("e4b", 2, true, 13.12),
    ];
    let seqs = [2048, 8192, 32768, 2048, 2048, 2048, 2048];
    let flash_facts = DeviceFacts { flash: true, ..h200_today() };
    let runs = today
        .map(|r| (r, 2048, h200_today()))
        .into_iter()
        .chain(f32_inputs.map(|r| (r, 2048, h200())))
        .chain(flash.into_iter().zip(seqs).map(|(r, s)| (r, s, flash_facts.clone())));
    for ((name, batch, recompute, gib), seq, facts) in runs {
        let input = PlanInput { seq, ..input(batch, WeightDtype::Bf16) };
        let e = estimate(&preset(name), &input, &facts, recompute).unwrap();
        let err = e.total as f64 / GIB / gib - 1.0;
        eprintln!(
            "{name} {batch} × {seq} recompute {recompute} flash {}: estimate {:.2} GiB, measured {gib} GiB ({:+.1}%)",
            facts.flash,
            e.total as f64 / GIB,
            100.0 * err
        );
        assert!(err.abs() <= 0.15, "{name} {batch} {recompute}: {err}");
    }
    // 26B-A4B, batch 1 × 2048, recomputation, the experts adapted too: Burn's pool reserved
    // 54.7 GiB (the plan's total less the runtime is what the pool holds).
    let mut moe = input(1, WeightDtype::Bf16);
    moe.lora.target_parameters =
        Some(vec!["experts.gate_up_proj".into(), "experts.down_proj".into()]);
    let e = estimate(&preset("26b-a4b"), &moe, &h200(), true).unwrap();
    let err = (e.total - e.runtime) as f64 / GIB / 54.7 - 1.0;
    assert!(err.abs() <= 0.15, "26b-a4b: {err} {e:?}");
}

#[test]
fn auto_dtype_is_bf16_on_cuda_f16_on_other_gpus_and_f32_on_the_cpu() {
    let mut f = h200();
    assert_eq!(f.auto_dtype(), WeightDtype::Bf16);
    f.bf16 = false; // wgpu / Vulkan
    assert_eq!(f.auto_dtype(), WeightDtype::F16);
    f.gpu = false;
    assert_eq!(f.auto_dtype(), WeightDtype::F32);
}

#[test]
fn auto_recomputes_only_when_the_step_does_not_fit_without() {
    let (cfg, input) = (preset("e2b"), input(4, WeightDtype::Bf16));
    let plan = MemoryPlan::new(&cfg, &input, &h200(), Recompute::Auto).unwrap();
    assert!(!plan.recompute && plan.fits() == Some(true), "{}", plan.summary());
    let mut small = h200();
    small.memory = Some(24 << 30); // a 24 GiB card
    let plan = MemoryPlan::new(&cfg, &input, &small, Recompute::Auto).unwrap();
    assert!(plan.recompute && plan.fits() == Some(true), "{}", plan.summary());
    plan.check().unwrap();
    // Only as many layers as it takes: one fewer would pass 90% of the card.
    let k = plan.recompute_layers;
    let over = estimate_layers(&cfg, &input, &small, k - 1).unwrap().total as f64;
    assert!(k < cfg.layers.len() && over > 0.9 * (24u64 << 30) as f64, "{}", plan.summary());
    assert!(plan.chosen().total <= (24u64 << 30) * 9 / 10, "{}", plan.summary());
    assert_eq!(plan.resolved(), Recompute::Layers(k));
    assert!(
        plan.lines().iter().any(|l| l.contains(&format!("{k} of 35 layers"))),
        "{:?}",
        plan.lines()
    );
    // Unknown memory: no check, and `auto` stays off.
    small.memory = None;
    let plan = MemoryPlan::new(&cfg, &input, &small, Recompute::Auto).unwrap();
    assert!(!plan.recompute && plan.fits().is_none() && plan.check().is_ok());
    assert!(plan.summary().contains("not checked"), "{}", plan.summary());
}

#[test]
fn a_step_that_cannot_fit_is_refused_with_the_numbers_and_what_to_change() {
    let mut card = h200();
    card.memory = Some(16 << 30);
    let cfg = preset("e4b");
    let plan = MemoryPlan::new(&cfg, &input(8, WeightDtype::Bf16), &card, Recompute::Off).unwrap();
    assert_eq!(plan.fits(), Some(false));
    let e = plan.check().unwrap_err().to_string();
    for needle in ["GiB", "weights", "activations", "16.0 GiB", "[train] batch_size = 1"] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // E4B's bf16 weights alone (9.9 GiB) and a 4 GiB device: nothing single fits.
    card.memory = Some(4 << 30);
    let plan = MemoryPlan::new(&cfg, &input(1, WeightDtype::Bf16), &card, Recompute::Auto).unwrap();
    let e = plan.check().unwrap_err().to_string();
    assert!(e.contains("no single change"), "{e}");
}

#[test]
fn recomputation_and_smaller_steps_shrink_the_estimate() {
    let cfg = preset("e2b");
    let est = |b, dt, rc| estimate(&cfg, &input(b, dt), &h200(), rc).unwrap().total;
    assert!(est(4, WeightDtype::Bf16, true) < est(4, WeightDtype::Bf16, false));
    // Recomputing more of the first layers keeps less, from none to all of them (up to one
    // layer's input: recomputing the last layer too keeps its input beside the others).
    let layers = |k| estimate_layers(&cfg, &input(4, WeightDtype::Bf16), &h200(), k).unwrap().total;
    assert_eq!(layers(0), est(4, WeightDtype::Bf16, false));
    assert_eq!(layers(cfg.layers.len()), est(4, WeightDtype::Bf16, true));
    let input_bytes = 4 * 2048 * 1536 * 2;
    for k in 1..=cfg.layers.len() {
        let (now, before) = (layers(k), layers(k - 1));
        assert!(now <= before + input_bytes, "{k} layers: {now} > {before}");
    }
    assert!(layers(18) < (layers(0) + layers(35)) / 2 + (8 << 30), "half the layers: about half");
    assert!(est(2, WeightDtype::Bf16, false) < est(4, WeightDtype::Bf16, false));
    assert!(est(4, WeightDtype::Bf16, false) < est(4, WeightDtype::F32, false));
    // f16 keeps an f32 residual stream and an f32 MLP product: more than bf16.
    assert!(est(4, WeightDtype::Bf16, false) < est(4, WeightDtype::F16, false));
}

#[test]
fn lora_reading_bf16_inputs_saves_the_f32_copies_of_each_projection_input() {
    let cfg = preset("e2b");
    let mut reads = h200();
    reads.bf16_lora_inputs = true;
    let input = input(4, WeightDtype::Bf16);
    let copy = estimate(&cfg, &input, &h200(), false).unwrap();
    let read = estimate(&cfg, &input, &reads, false).unwrap();
    // Per layer and token, the copies were 4 bytes per input width of each targeted projection
    // (q, k, v share one input but each had its copy); read as they are, 2 bytes once per input.
    let (n, e) = (4 * 2048u64, 1536u64);
    let mut copies = 0;
    let mut shared = 0;
    for spec in &cfg.layers {
        let (q, m) = ((8 * spec.head_dim) as u64, spec.intermediate_size as u64);
        let qkv = if spec.kv_donor.is_none() { 3 } else { 1 };
        copies += 4 * n * (qkv * e + q + 2 * e + m);
        shared += 2 * n * (e + q + e + m);
    }
    assert_eq!(copy.activations - read.activations, copies - shared);
    // Neither changes under f32 weights (the cast is the activation itself either way).
    let f32_input = PlanInput { dtype: WeightDtype::F32, ..input };
    assert_eq!(
        estimate(&cfg, &f32_input, &h200(), false).unwrap(),
        estimate(&cfg, &f32_input, &reads, false).unwrap()
    );
}

#[test]
fn with_flash_attention_the_activations_grow_linearly_in_the_sequence() {
    let cfg = preset("e2b");
    let flash = DeviceFacts { flash: true, ..h200_today() };
    let at = |facts: &DeviceFacts, seq| {
        let input = PlanInput { seq, ..input(1, WeightDtype::Bf16) };
        estimate(&cfg, &input, facts, false).unwrap()
    };
    let (short, long) = (at(&flash, 8192), at(&flash, 32768));
    assert_eq!(long.activations, 4 * short.activations, "{short:?} {long:?}");
    // The `[s, t]` probabilities of the full layers grow quadratically without it.
    let (short, long) = (at(&h200_today(), 8192), at(&h200_today(), 32768));
    assert!(long.activations > 6 * short.activations, "{short:?} {long:?}");
}

/// The H200 through Vulkan (f16, no bf16, no cuBLAS): wgpu's adapter adds LoRA's change as one
/// op reading the activations as they are (`gemma4_kernels::fuses_low_rank_add`, ranks ≤ 32).
fn h200_vulkan(low_rank_add_rank: Option<usize>) -> DeviceFacts {
    let memory = 143_771usize << 20;
    DeviceFacts {
        backend: "vulkan".into(),
        bf16: false,
        memory_source: "the largest device-local heap".into(),
        piece_bytes: memory / 4,
        low_rank_add_rank,
        ..h200()
    }
}

/// nvidia-smi's peak over `bench` (E2B 4 × 2048 f16, warm-up until an update, 3 timed steps),
/// Vulkan on the H200, one device call, 2026-12-03: the composed adapter products
/// (`GEMMA4_TUNE_TALL=0`, f32 copies of the inputs) and the one-op low-rank add (the default),
/// recomputing none or the first 26, 28 or 31 of 35 layers; f16's GeGLU row-scaled in one
/// kernel (gate and up kept in f16).
#[test]
fn estimates_track_vulkans_peaks_with_and_without_the_one_op_low_rank_add() {
    let cfg = preset("e2b");
    // (the adapter reads its inputs as they are, layers recomputed, measured GiB)
    let runs =
        [(false, 0, 56.7), (true, 0, 48.0), (true, 26, 19.9), (true, 28, 17.5), (true, 31, 13.9)];
    for (reads, k, gib) in runs {
        let facts = h200_vulkan(reads.then_some(32));
        let e = estimate_layers(&cfg, &input(4, WeightDtype::F16), &facts, k).unwrap();
        let err = e.total as f64 / GIB / gib - 1.0;
        eprintln!(
            "reads {reads} k {k}: estimate {:.2} GiB, measured {gib} ({:+.1}%)",
            e.total as f64 / GIB,
            100.0 * err
        );
        assert!(err.abs() <= 0.15, "reads {reads}, {k} layers: {err}");
    }
    // Ranks above the one op's, and dropout, take the composed products: f32 copies again.
    let composed = estimate(&cfg, &input(4, WeightDtype::F16), &h200_vulkan(None), false).unwrap();
    let mut wide = input(4, WeightDtype::F16);
    wide.lora.r = 64;
    let mut dropout = input(4, WeightDtype::F16);
    dropout.lora.lora_dropout = 0.05;
    for other in [wide, dropout] {
        let (one, plain) = (h200_vulkan(Some(32)), h200_vulkan(None));
        assert_eq!(
            estimate(&cfg, &other, &one, false).unwrap(),
            estimate(&cfg, &other, &plain, false).unwrap()
        );
    }
    assert!(
        composed.total
            > estimate(&cfg, &input(4, WeightDtype::F16), &h200_vulkan(Some(32)), false)
                .unwrap()
                .total
    );
}
