//! Fuzzing (proptest) the binary files a run reads (issue 16): GGUF headers and metadata,
//! safetensors weight headers, and a checkpoint's state (`trainer_state.json`,
//! `optimizer.safetensors`). Sizes, offsets and counts are replaced by arbitrary integers (huge,
//! overflowing, zero) and numbers by NaN/inf/negatives. Nothing panics or aborts; an error names
//! the file; whatever loads is checked (a loaded optimizer state is finite).
//!
//! 256 cases per target by default; longer: `PROPTEST_CASES=5000 cargo test -p gemma4-train
//! --test fuzz_files`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use gemma4_model::{Gemma4TextModel, GgufHeader, LoadOptions};
use gemma4_train::{Recipe, checkpoint};
use proptest::prelude::*;
use serde_json::Value;

mod fuzz_util;
use fuzz_util::arbitrary_int;

// ── GGUF ──

/// A GGUF v3 Gemma 3 header: metadata and one F32 `token_embd.weight` (ggml dims [2, 4]), with
/// the byte position of every integer a loader trusts (counts, lengths, sizes, dims, offset).
fn gguf() -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut b = b"GGUF".to_vec();
    let mut fields = Vec::new();
    let mut int = |b: &mut Vec<u8>, v: u64, width: usize| {
        fields.push((b.len(), width));
        b.extend(&v.to_le_bytes()[..width]);
    };
    int(&mut b, 3, 4); // version
    int(&mut b, 1, 8); // tensors
    int(&mut b, 8, 8); // metadata entries
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    string(&mut b, "gemma3");
    for (k, v) in [
        ("embedding_length", 2),
        ("block_count", 1),
        ("feed_forward_length", 4),
        ("attention.head_count", 1),
        ("attention.head_count_kv", 1),
        ("attention.key_length", 2),
        ("context_length", 8),
    ] {
        string(&mut b, &format!("gemma3.{k}"));
        b.extend(4u32.to_le_bytes());
        int(&mut b, v, 4);
    }
    string(&mut b, "token_embd.weight");
    int(&mut b, 2, 4); // n_dims
    int(&mut b, 2, 8);
    int(&mut b, 4, 8);
    b.extend(0u32.to_le_bytes()); // F32
    int(&mut b, 0, 8); // offset
    b.resize(b.len().div_ceil(32) * 32 + 32, 0);
    (b, fields)
}

proptest! {
    #[test]
    fn fuzz_gguf_sizes_never_panic_and_errors_name_the_file(
        edits in prop::collection::vec((any::<prop::sample::Index>(), arbitrary_int()), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (mut bytes, fields) = gguf();
        for (at, v) in edits {
            let (pos, width) = fields[at.index(fields.len())];
            bytes[pos..pos + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = GgufHeader::parse(&bytes, &path) {
            prop_assert!(e.to_string().contains("m.gguf"), "{e}");
        }
        // The config a model would be built from: sizes bounded, errors naming the file.
        if let Err(e) = Gemma4TextModel::config_at(&path) {
            prop_assert!(e.to_string().contains("m.gguf"), "{e}");
        }
    }
}

// ── safetensors weights ──

fn dense() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dense")
}

/// `value` as a replacement for a header field: shapes, offsets and dtypes out of range.
fn header_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arbitrary_int().prop_map(|v| serde_json::json!([v, 2])),
        (arbitrary_int(), arbitrary_int()).prop_map(|(a, b)| serde_json::json!([a, b])),
        Just(serde_json::json!([])),
        Just(serde_json::json!([1u64 << 33, 1u64 << 33, 1u64 << 33])),
        Just(serde_json::json!(-1)),
        prop::sample::select(vec!["F64", "I8", "U64", "BOOL", "F16", "x"]).prop_map(Value::from),
    ]
}

proptest! {
    #[test]
    fn fuzz_safetensors_headers_never_panic_and_errors_name_the_file_or_tensor(
        edits in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::sample::select(vec!["shape", "data_offsets", "dtype"]), header_value()),
            1..3,
        ),
    ) {
        let bytes = std::fs::read(dense().join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Map<String, Value> =
            serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let names: Vec<String> = header.keys().filter(|k| *k != "__metadata__").cloned().collect();
        for (at, field, value) in edits {
            let name = &names[at.index(names.len())];
            header[name][field] = value;
        }
        let h = serde_json::to_vec(&header).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(dense().join("config.json"), dir.path().join("config.json")).unwrap();
        let out = [(h.len() as u64).to_le_bytes().as_slice(), &h, &bytes[8 + n..]].concat();
        std::fs::write(dir.path().join("model.safetensors"), out).unwrap();
        let device = Device::flex();
        let options = LoadOptions::new(burn::tensor::DType::F32);
        if let Err(e) = Gemma4TextModel::from_dir_with(dir.path(), &device, options) {
            let e = e.to_string();
            prop_assert!(e.contains("model.safetensors") || e.contains("tensor "), "{e}");
        }
    }
}

// ── Checkpoint state ──

/// A checkpoint of a 1-step run of the tiny model, and its recipe (made once).
fn trained() -> &'static (tempfile::TempDir, PathBuf, Recipe) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf, Recipe)> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let recipe =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../recipes/quickstart.toml");
        let sets = [
            format!("train.out_dir={:?}", tmp.path().join("run").display().to_string()),
            "train.iters=1".into(),
            "eval.batches=1".into(),
        ];
        let recipe = Recipe::load(&recipe, &sets).unwrap();
        let device = Device::flex().autodiff();
        gemma4_train::train(&recipe, &device, None).unwrap();
        let ckpt = checkpoint::latest(&tmp.path().join("run/checkpoints")).unwrap();
        (tmp, ckpt, recipe)
    })
}

/// `f` on the tiny model of [`trained`], loaded once per thread (proptest runs a target's
/// cases on one thread; a model is not `Sync`).
fn with_model<T>(f: impl FnOnce(&Gemma4TextModel) -> T) -> T {
    thread_local! {
        static MODEL: Gemma4TextModel = {
            let device = Device::flex().autodiff();
            gemma4_train::setup::load_base(&trained().2, &device, usize::MAX).unwrap().model
        };
    }
    MODEL.with(f)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn state_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arbitrary_int().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::Null),
        Just(serde_json::json!({"scale": -1.0, "enabled": true, "good_steps": 0})),
        Just(serde_json::json!({"scale": 0.0, "enabled": true, "good_steps": 0})),
        Just(Value::from("x")),
    ]
}

proptest! {
    #[test]
    fn fuzz_checkpoint_state_never_panics_and_what_loads_is_finite(
        field in prop::sample::select(vec![
            "step", "epoch", "batch_index", "trained_tokens", "best_val", "best_step",
            "evals_since_best", "skipped_steps", "loss_scale", "fingerprint",
        ]),
        value in state_value(),
        poison in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(vec![f32::NAN, f32::INFINITY, -1.0, 1e38]))),
    ) {
        let ckpt = &trained().1;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(ckpt, dir.path());
        let state_path = dir.path().join("trainer_state.json");
        let mut state: Value =
            serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
        state[field] = value;
        std::fs::write(&state_path, state.to_string()).unwrap();
        let opt = dir.path().join("optimizer.safetensors");
        if let Some((at, x)) = poison {
            let mut bytes = std::fs::read(&opt).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let data = 8 + n;
            let i = data + at.index((bytes.len() - data) / 4) * 4;
            bytes[i..i + 4].copy_from_slice(&x.to_le_bytes());
            std::fs::write(&opt, bytes).unwrap();
        }
        match with_model(|m| checkpoint::load(dir.path(), m)) {
            Err(e) => {
                let e = e.to_string();
                prop_assert!(
                    e.contains("trainer_state.json") || e.contains("optimizer.safetensors"),
                    "{e}"
                );
            }
            Ok((_, opt, _)) => {
                for t in opt.m.values().chain(opt.v.values()) {
                    let max = t.clone().abs().max().into_scalar::<f32>();
                    prop_assert!(max.is_finite());
                }
            }
        }
    }
}

#[test]
fn fuzz_generators_start_from_files_that_load() {
    let (bytes, _) = gguf();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let cfg = Gemma4TextModel::config_at(&path).unwrap().config;
    assert_eq!((cfg.num_hidden_layers, cfg.vocab_size, cfg.hidden_size), (1, 4, 2));
    let (_, opt, state) = with_model(|m| checkpoint::load(&trained().1, m)).unwrap();
    assert!(!opt.m.is_empty() && state.step == 1);
}
