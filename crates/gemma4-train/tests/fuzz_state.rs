//! Fuzzing (proptest) in memory, cheap enough per case for runs of a million (issue 16): a
//! checkpoint's state (`trainer_state.json` and `optimizer.safetensors`) and `config.json`.
//! The generators start from valid files and replace values (huge, negative, fractional,
//! out-of-range and mistyped numbers, NaN/inf moments, wrong shapes and dtypes, lying offsets),
//! then possibly cut or byte-edit the bytes, so most cases get past parsing
//! (`fuzz_generators_reach_past_parsing`). Nothing panics; errors name the file; what loads is
//! checked: counters that cannot overflow, finite moments, configs a model can be built from.
//!
//! 256 cases per target by default; the recorded runs (docs/robustness.md §7):
//! `PROPTEST_CASES=1000000 cargo test -p gemma4-train --test fuzz_state -- --exact NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gemma4_model::Gemma4TextConfig;
use gemma4_train::checkpoint::{MAX_COUNT, parse_optimizer, parse_state};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

mod fuzz_util;
use fuzz_util::{arbitrary_int, byte_edits};

// ── trainer_state.json ──

const STATE_KEYS: &[&str] = &[
    "step",
    "epoch",
    "batch_index",
    "trained_tokens",
    "best_val",
    "best_step",
    "evals_since_best",
    "skipped_steps",
    "loss_scale",
    "fingerprint",
];

/// A JSON value as text, as a hostile file may spell it.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        arbitrary_int().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "-1",
            "-0",
            "1.5",
            "9007199254740993",
            "18446744073709551616",
            "1e999",
            "-1e999",
            "NaN",
            "Infinity",
            "null",
            "true",
            "\"x\"",
            "[]",
            "{}",
            "{\"scale\": -1.0, \"enabled\": true, \"good_steps\": 0}",
            "{\"scale\": 0.0, \"enabled\": true, \"good_steps\": 0}",
            "{\"scale\": 1e300, \"enabled\": true, \"good_steps\": 0}",
            "{\"scale\": 65536.0, \"enabled\": true, \"good_steps\": 4294967295}",
            "{\"scale\": 65536.0, \"enabled\": true}",
        ])
        .prop_map(str::to_owned),
    ]
}

/// A `trainer_state.json`: every key with a valid value, 0–3 of them replaced, removed or
/// repeated, plus the raw edits.
fn state_file() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<Index>(), prop::option::weighted(0.85, number_text()));
    (prop::collection::vec(edit, 0..3), any::<bool>(), byte_edits()).prop_map(
        |(edits, repeat, raw)| {
            let valid = [
                "3",
                "1",
                "2",
                "180",
                "2.25",
                "2",
                "1",
                "0",
                "{\"scale\": 65536.0, \"enabled\": true, \"good_steps\": 3}",
                "\"f00d\"",
            ];
            let mut kv: Vec<(&str, Option<String>)> =
                STATE_KEYS.iter().zip(valid).map(|(k, v)| (*k, Some(v.to_owned()))).collect();
            for (at, v) in edits {
                let i = at.index(kv.len());
                if repeat && v.is_some() {
                    kv.push((kv[i].0, v));
                } else {
                    kv[i].1 = v;
                }
            }
            let fields: Vec<String> =
                kv.iter().filter_map(|(k, v)| Some(format!("\"{k}\": {}", v.as_ref()?))).collect();
            raw.apply(format!("{{{}}}", fields.join(", ")).into_bytes())
        },
    )
}

fn check_state(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let path = Path::new("/c/0000003/trainer_state.json");
    match parse_state(&String::from_utf8_lossy(bytes), path) {
        Err(e) => {
            prop_assert!(e.to_string().contains("trainer_state.json"), "{e}");
            Ok(false)
        }
        Ok(s) => {
            for n in [s.step, s.batch_index, s.trained_tokens, s.best_step, s.skipped_steps] {
                // Counting on from a loaded state never overflows.
                prop_assert!(n as u64 <= MAX_COUNT && n.checked_add(1 << 40).is_some());
            }
            prop_assert!(s.epoch <= MAX_COUNT && s.evals_since_best as u64 <= MAX_COUNT);
            prop_assert!(s.best_val.is_none_or(f64::is_finite));
            prop_assert!(s.loss_scale.is_none_or(|l| l.problem().is_none()));
            Ok(true)
        }
    }
}

proptest! {
    #[test]
    fn fuzz_trainer_state_never_panics_and_what_loads_cannot_overflow(bytes in state_file()) {
        check_state(&bytes)?;
    }
}

// ── optimizer.safetensors ──

/// The adapter tensors the moments belong to (two LoRA factors).
fn adapter_shapes() -> BTreeMap<String, Vec<usize>> {
    let p = "base_model.model.model.layers.0.self_attn.q_proj";
    BTreeMap::from([
        (format!("{p}.lora_A.weight"), vec![2, 4]),
        (format!("{p}.lora_B.weight"), vec![4, 2]),
    ])
}

/// One moment tensor: name, dtype, shape, values (each possibly wrong).
type MomentSpec = (String, &'static str, Vec<u64>, Vec<f32>);

fn moment_edit() -> impl Strategy<Value = (Index, u8, Index, f32, String, Vec<u64>)> {
    (
        any::<Index>(),
        0u8..5,
        any::<Index>(),
        prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0, -0.0, 1e38]),
        prop::sample::select(vec!["x.", "m", "v.", "m.m.", ""]).prop_map(str::to_owned),
        prop::collection::vec(arbitrary_int(), 0..3),
    )
}

/// `optimizer.safetensors` for [`adapter_shapes`]: `m.`/`v.` of each, small finite values,
/// then 0–2 edits (a value poisoned, a name, dtype or shape changed, a tensor dropped) and the
/// raw edits.
fn optimizer_file() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(moment_edit(), 1..3)];
    (edits, byte_edits()).prop_map(|(edits, raw)| {
        let mut specs: Vec<MomentSpec> = Vec::new();
        for (k, shape) in adapter_shapes() {
            for p in ["m", "v"] {
                let values = (0..8).map(|i| i as f32 * 0.125).collect();
                specs.push((
                    format!("{p}.{k}"),
                    "F32",
                    shape.iter().map(|&d| d as u64).collect(),
                    values,
                ));
            }
        }
        for (at, kind, vi, x, prefix, shape) in edits {
            let s = &mut specs[at.index(4)];
            match kind {
                0 | 1 => s.3[vi.index(8)] = x,
                2 => s.0 = format!("{prefix}{}", s.0.split_once('.').map_or("", |p| p.1)),
                3 => s.1 = ["F16", "BF16", "I32", "F64", "U8"][vi.index(5)],
                _ => s.2 = shape,
            }
        }
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, values) in specs {
            let start = data.len();
            values.iter().for_each(|v| data.extend(v.to_le_bytes()));
            header.insert(
                name,
                json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        header.insert("__metadata__".into(), json!({"step": "3"}));
        let h = serde_json::to_vec(&header).unwrap_or_default();
        raw.apply([&(h.len() as u64).to_le_bytes()[..], &h, &data].concat())
    })
}

fn check_optimizer(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let shapes = adapter_shapes();
    match parse_optimizer(bytes, Path::new("/c/0000003/optimizer.safetensors"), &shapes) {
        Err(e) => {
            prop_assert!(e.to_string().contains("optimizer.safetensors"), "{e}");
            Ok(false)
        }
        Ok(moments) => {
            for m in moments {
                prop_assert_eq!(Some(&m.shape), shapes.get(&m.key));
                prop_assert_eq!(m.values.len(), m.shape.iter().product::<usize>());
                prop_assert!(m.values.iter().all(|x| x.is_finite() && (!m.second || *x >= 0.0)));
            }
            Ok(true)
        }
    }
}

proptest! {
    #[test]
    fn fuzz_optimizer_state_never_panics_and_what_loads_is_finite(bytes in optimizer_file()) {
        check_optimizer(&bytes)?;
    }
}

// ── config.json ──

/// The fixtures' configs (text-only and multimodal, Gemma 4 and Gemma 3), parsed once.
fn configs() -> &'static Vec<Value> {
    static CONFIGS: OnceLock<Vec<Value>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        [
            "dense",
            "e2b_like",
            "moe_keqv",
            "multimodal",
            "per_layer_config",
            "gemma3_dense",
            "bidirectional",
        ]
        .iter()
        .map(|d| {
            serde_json::from_slice(&std::fs::read(root.join(d).join("config.json")).unwrap())
                .unwrap()
        })
        .collect()
    })
}

fn config_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arbitrary_int().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![0.0, -1.0, 1e-300, 1e300, 0.5, 2.0]).prop_map(Value::from),
        Just(Value::Null),
        Just(json!("x")),
        Just(json!(true)),
        Just(json!([1, "full_attention", null])),
        Just(json!(["sliding_attention", "sliding_attention", "sliding_attention"])),
        Just(json!({"rope_type": "yarn", "factor": -2.0, "rope_theta": 0.0})),
        Just(
            json!({"full_attention": {"rope_type": "proportional", "rope_theta": -1.0, "partial_rotary_factor": 7.0}})
        ),
    ]
}

/// A fixture's config with 0–3 values (top level, or inside `text_config`, `rope_parameters`
/// or `layer_types`) replaced or removed.
fn config_json() -> impl Strategy<Value = Value> {
    let edit = (any::<Index>(), any::<Index>(), prop::option::weighted(0.85, config_value()));
    (any::<Index>(), prop::collection::vec(edit, 0..4)).prop_map(|(which, edits)| {
        let mut json = configs()[which.index(configs().len())].clone();
        for (at, inner, v) in edits {
            let obj = match json.get_mut("text_config") {
                Some(t) if at.index(3) > 0 => t,
                _ => &mut json,
            };
            let Some(obj) = obj.as_object_mut() else { continue };
            let keys: Vec<String> = obj.keys().cloned().collect();
            let key = &keys[at.index(keys.len())];
            // Nested values too: an item of `layer_types`, a key of `rope_parameters`.
            let slot = match &mut obj[key] {
                Value::Array(a) if !a.is_empty() && inner.index(2) == 0 => {
                    let i = inner.index(a.len());
                    &mut a[i]
                }
                Value::Object(o) if !o.is_empty() && inner.index(2) == 0 => {
                    let k = o.keys().nth(inner.index(o.len())).cloned().unwrap_or_default();
                    &mut o[&k]
                }
                v => v,
            };
            match v {
                Some(v) => *slot = v,
                None => *slot = Value::Null,
            }
        }
        json
    })
}

fn check_config(json: &Value) -> Result<bool, TestCaseError> {
    let Ok(loaded) = Gemma4TextConfig::from_json(json) else { return Ok(false) };
    let c = &loaded.config;
    prop_assert_eq!(c.layers.len(), c.num_hidden_layers);
    prop_assert!(c.num_kv_shared_layers <= c.num_hidden_layers);
    for (i, l) in c.layers.iter().enumerate() {
        prop_assert!(l.head_dim > 0 && l.head_dim % 2 == 0 && l.num_key_value_heads > 0);
        prop_assert!(c.num_attention_heads % l.num_key_value_heads == 0);
        prop_assert!(l.kv_donor.is_none_or(|d| d < i), "layer {} donor {:?}", i, l.kv_donor);
    }
    for (t, r) in &c.rope_parameters {
        prop_assert!(r.rope_theta.is_finite() && r.rope_theta > 0.0, "{:?} {:?}", t, r);
        prop_assert!(r.factor.is_finite() && r.factor > 0.0, "{:?} {:?}", t, r);
        prop_assert!((0.0..=1.0).contains(&r.partial_rotary_factor), "{:?} {:?}", t, r);
    }
    prop_assert!(c.rms_norm_eps.is_finite() && c.rms_norm_eps > 0.0);
    prop_assert!(c.attention_scale.is_finite() && c.attention_scale > 0.0);
    prop_assert!(!gemma4_model::expected_tensors(c, "model.").is_empty());
    Ok(true)
}

proptest! {
    #[test]
    fn fuzz_config_json_never_panics_and_what_resolves_can_be_built(json in config_json()) {
        check_config(&json)?;
    }
}

/// How many of `n` generated cases pass `check`.
fn reach<T>(
    s: impl Strategy<Value = T>,
    n: usize,
    check: impl Fn(&T) -> Result<bool, TestCaseError>,
) -> usize {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..n).filter(|_| check(&s.new_tree(&mut runner).unwrap().current()).unwrap()).count()
}

#[test]
fn fuzz_generators_reach_past_parsing() {
    let state = reach(state_file(), 2000, |b| check_state(b));
    let optimizer = reach(optimizer_file(), 2000, |b| check_optimizer(b));
    let config = reach(config_json(), 2000, check_config);
    println!("of 2000 each: {state} states, {optimizer} optimizer files, {config} configs load");
    assert!(state > 600 && optimizer > 600 && config > 600, "{state} {optimizer} {config}");
}
