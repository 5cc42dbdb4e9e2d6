//! Fuzzing (proptest) the binary model formats in memory, cheap enough per case for runs of a
//! million (issue 16): GGUF metadata and tensor tables, and safetensors headers. The generators
//! are structure-aware: a valid file whose fields are replaced (wrong value types, huge or
//! overflowing sizes and counts, bad UTF-8, lying lengths, overlapping or misaligned offsets),
//! then possibly cut or byte-edited, so most cases get past the first check (measured by
//! `fuzz_generators_reach_*`). Nothing panics or aborts; errors name the file; whatever loads
//! is consistent (byte ranges inside the file and of the size the shape needs, config sizes
//! within their limits).
//!
//! 256 cases per target by default; the recorded runs (docs/robustness.md §7):
//! `PROPTEST_CASES=1000000 cargo test -p gemma4-train --test fuzz_formats -- --exact NAME`.

use std::path::Path;

use burn::tensor::{DType, Device};
use gemma4_model::{
    Checkpoint, Gemma4TextConfig, Gemma4TextModel, GgufHeader, dequantize, expected_tensors,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

mod fuzz_util;
use fuzz_util::{arbitrary_int, byte_edits};

// ── GGUF ──

/// A metadata value as (GGUF type id, encoded bytes), `depth` levels of arrays deep.
fn meta_value(depth: u32) -> BoxedStrategy<(u32, Vec<u8>)> {
    let int = (prop::sample::select(vec![0u32, 1, 2, 3, 4, 5, 10, 11]), arbitrary_int()).prop_map(
        |(ty, v)| {
            let width = match ty {
                0 | 1 => 1,
                2 | 3 => 2,
                4 | 5 => 4,
                _ => 8,
            };
            (ty, v.to_le_bytes()[..width].to_vec())
        },
    );
    let float = prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 0.0, 1e-6, 1e30, 1e300])
        .prop_flat_map(|f| {
            prop_oneof![
                Just((6u32, (f as f32).to_le_bytes().to_vec())),
                Just((12, f.to_le_bytes().to_vec()))
            ]
        });
    let text = prop_oneof![
        9 => prop::sample::select(vec![&b"gemma3"[..], b"llama", b"linear", b"none", b"", b"yarn"]),
        1 => Just(&b"\xff\xfe"[..]),
    ];
    let string = (text, prop::option::weighted(0.05, arbitrary_int()))
        .prop_map(|(s, lie)| (8u32, gguf_string(s, lie)));
    let other = prop_oneof![
        3 => any::<u8>().prop_map(|b| (7u32, vec![b])),
        1 => (prop::sample::select(vec![13u32, 99, u32::MAX]), any::<[u8; 4]>())
            .prop_map(|(t, b)| (t, b.to_vec())),
    ];
    let leaf = prop_oneof![6 => int, 2 => float, 2 => string, 1 => other].boxed();
    if depth == 0 {
        return leaf;
    }
    let array = (meta_value(depth - 1), 0usize..4, prop::option::weighted(0.1, arbitrary_int()))
        .prop_map(|((ety, item), n, lie)| {
            let mut b = ety.to_le_bytes().to_vec();
            b.extend(lie.unwrap_or(n as u64).to_le_bytes());
            (0..n).for_each(|_| b.extend(&item));
            (9u32, b)
        });
    prop_oneof![4 => leaf, 1 => array].boxed()
}

fn gguf_string(s: &[u8], lie: Option<u64>) -> Vec<u8> {
    [&lie.unwrap_or(s.len() as u64).to_le_bytes()[..], s].concat()
}

/// The metadata of a one-layer Gemma 3 (as `(key, type, bytes)`) that the edits start from.
fn base_metadata() -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    let mut kv = vec![(b"general.architecture".to_vec(), 8, gguf_string(b"gemma3", None))];
    for (k, v) in [
        ("embedding_length", 2u32),
        ("block_count", 1),
        ("feed_forward_length", 4),
        ("attention.head_count", 1),
        ("attention.head_count_kv", 1),
        ("attention.key_length", 2),
        ("context_length", 8),
    ] {
        kv.push((format!("gemma3.{k}").into_bytes(), 4, v.to_le_bytes().to_vec()));
    }
    kv
}

const META_KEYS: &[&str] = &[
    "general.alignment",
    "gemma3.embedding_length",
    "gemma3.block_count",
    "gemma3.attention.key_length",
    "gemma3.attention.layer_norm_rms_epsilon",
    "gemma3.rope.freq_base",
    "gemma3.attention.sliding_window",
    "gemma3.rope.scaling.type",
    "gemma3.rope.scaling.factor",
    "gemma3.final_logit_softcapping",
    "tokenizer.ggml.eos_token_id",
    "general.architecture",
];

#[derive(Clone, Debug)]
enum MetaEdit {
    /// Replace the value of entry `at` (type and bytes).
    Set(Index, (u32, Vec<u8>)),
    Remove(Index),
    /// Add (or repeat) a key.
    Add(&'static str, (u32, Vec<u8>)),
}

fn meta_edit() -> impl Strategy<Value = MetaEdit> {
    prop_oneof![
        3 => (any::<Index>(), meta_value(2)).prop_map(|(i, v)| MetaEdit::Set(i, v)),
        1 => any::<Index>().prop_map(MetaEdit::Remove),
        3 => (prop::sample::select(META_KEYS), meta_value(2)).prop_map(|(k, v)| MetaEdit::Add(k, v)),
    ]
}

/// A tensor-table entry: name, ggml dims (innermost first), type id, offset.
type Entry = (Vec<u8>, Vec<u64>, u32, u64);

fn tensor_entry() -> impl Strategy<Value = Entry> {
    let name = prop::sample::select(vec![
        &b"token_embd.weight"[..],
        b"output_norm.weight",
        b"output.weight",
        b"blk.0.attn_q.weight",
        b"blk.99999999999999999999.attn_q.weight",
        b"rope_freqs.weight",
        b"\xff.weight",
    ]);
    let dim = prop_oneof![8 => 1u64..5, 1 => Just(32u64), 1 => arbitrary_int()];
    let dims = prop_oneof![
        8 => prop::collection::vec(dim.clone(), 1..3),
        1 => prop::collection::vec(dim, 0..10),
    ];
    let ty = prop_oneof![
        6 => Just(0u32),
        2 => prop::sample::select(vec![1u32, 30]),
        2 => prop::sample::select(vec![2u32, 6, 8, 12, 13, 14, 3, 99, u32::MAX]),
    ];
    let offset = prop_oneof![4 => (0u64..8).prop_map(|k| k * 32), 1 => arbitrary_int()];
    (name.prop_map(<[u8]>::to_vec), dims, ty, offset)
}

/// A GGUF file: the base metadata with edits, `token_embd.weight` (F32 [4, 2]) and more
/// entries, counts that may lie, data for every entry, then cut or byte-edited.
fn gguf_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(meta_edit(), 0..3),
        prop::collection::vec(tensor_entry(), 0..3),
        prop::option::weighted(0.05, (arbitrary_int(), arbitrary_int())),
        prop::option::weighted(0.02, prop::sample::select(vec![1u32, 2, 4, 7])),
        byte_edits(),
    )
        .prop_map(|(edits, extra, counts, version, raw)| {
            let mut kv = base_metadata();
            for e in edits {
                match e {
                    MetaEdit::Set(i, (ty, b)) => {
                        let k = i.index(kv.len());
                        (kv[k].1, kv[k].2) = (ty, b);
                    }
                    MetaEdit::Remove(i) => {
                        kv.remove(i.index(kv.len()));
                    }
                    MetaEdit::Add(k, (ty, b)) => kv.push((k.as_bytes().to_vec(), ty, b)),
                }
                if kv.is_empty() {
                    kv = base_metadata();
                }
            }
            let mut table = vec![(b"token_embd.weight".to_vec(), vec![2, 4], 0, 0)];
            table.extend(extra);
            let (n_t, n_kv) = counts.unwrap_or((table.len() as u64, kv.len() as u64));
            let mut b = b"GGUF".to_vec();
            b.extend(version.unwrap_or(3).to_le_bytes());
            b.extend(n_t.to_le_bytes());
            b.extend(n_kv.to_le_bytes());
            for (k, ty, v) in kv {
                b.extend(gguf_string(&k, None));
                b.extend(ty.to_le_bytes());
                b.extend(v);
            }
            for (name, dims, ty, offset) in table {
                b.extend(gguf_string(&name, None));
                b.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
                b.extend(ty.to_le_bytes());
                b.extend(offset.to_le_bytes());
            }
            b.resize(b.len().div_ceil(32) * 32 + 32 * 32, 0x3c);
            raw.apply(b)
        })
}

/// What a parsed GGUF may be trusted with: each tensor's bytes inside the file and of the size
/// its type and shape need; a config only with sizes within their limits.
fn check_gguf(bytes: &[u8], path: &Path) -> Result<(bool, bool), TestCaseError> {
    let h = match GgufHeader::parse(bytes, path) {
        Ok(h) => h,
        Err(e) => {
            prop_assert!(e.to_string().contains("fuzz.gguf"), "{e}");
            return Ok((false, false));
        }
    };
    for t in &h.tensors {
        prop_assert!(t.start <= t.end && t.end <= bytes.len(), "{t:?}");
        if let Ok(ty) = t.ggml_type {
            let n = t.shape.iter().rev().try_fold(1usize, |n, &d| n.checked_mul(d));
            prop_assert!(n.is_some(), "{:?}", t);
            let n = n.unwrap_or_default();
            prop_assert_eq!(ty.bytes_for(n), Some(t.end - t.start), "{:?}", t);
            if t.end - t.start <= 1 << 16 {
                prop_assert_eq!(dequantize(ty, &bytes[t.start..t.end]).len(), n);
            }
        }
    }
    match h.config(path) {
        Err(e) => {
            prop_assert!(e.to_string().contains("fuzz.gguf"), "{e}");
            Ok((true, false))
        }
        Ok(loaded) => {
            let c = &loaded.config;
            // gemma4_model's config limits (config/limits.rs).
            prop_assert!(c.num_hidden_layers <= 1 << 10);
            prop_assert!(c.hidden_size <= 1 << 20 && c.vocab_size <= 1 << 24);
            prop_assert!(!expected_tensors(c, "model.").is_empty());
            Ok((true, true))
        }
    }
}

proptest! {
    #[test]
    fn fuzz_gguf_in_memory_never_panics_and_what_parses_is_consistent(bytes in gguf_file()) {
        check_gguf(&bytes, Path::new("/m/fuzz.gguf"))?;
    }
}

// ── safetensors ──

/// The one-layer Gemma 3 of the GGUF target as a `config.json`: every tensor is tiny.
fn tiny_config() -> Gemma4TextConfig {
    let json = json!({
        "model_type": "gemma3_text", "vocab_size": 4, "hidden_size": 2, "num_hidden_layers": 1,
        "intermediate_size": 4, "num_attention_heads": 1, "num_key_value_heads": 1,
        "head_dim": 2, "query_pre_attn_scalar": 2, "max_position_embeddings": 8,
    });
    Gemma4TextConfig::from_json(&json).unwrap().config
}

/// An entry of the header: name, dtype, shape, `data_offsets` (each value possibly wrong).
fn header_edit() -> impl Strategy<Value = (Index, &'static str, Value)> {
    let v = prop_oneof![
        arbitrary_int().prop_map(|v| json!([v])),
        (arbitrary_int(), arbitrary_int()).prop_map(|(a, b)| json!([a, b])),
        (0u64..64, 0u64..64).prop_map(|(a, b)| json!([a, b])),
        Just(json!([])),
        Just(json!([1u64 << 33, 1u64 << 33, 1u64 << 33])),
        Just(json!([-1, 2])),
        Just(json!(-1)),
        Just(json!("F32")),
        Just(Value::Null),
        prop::sample::select(vec!["F64", "I8", "U64", "BOOL", "F16", "BF16", "F8_E4M3", "x"])
            .prop_map(Value::from),
    ];
    (any::<Index>(), prop::sample::select(vec!["shape", "data_offsets", "dtype", "junk"]), v)
}

/// A safetensors file of the tiny model (F32, F16 or BF16 tensors, in order, back to back),
/// with 0–2 header fields replaced, entries possibly dropped, and the usual cuts and byte edits.
fn safetensors_file() -> impl Strategy<Value = Vec<u8>> {
    let tensors = expected_tensors(&tiny_config(), "model.");
    (
        prop::sample::select(vec!["F32", "F16", "BF16"]),
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(header_edit(), 1..3),
        ],
        prop::option::weighted(0.1, any::<Index>()),
        prop::option::weighted(0.05, Just(json!({"format": 1, "x": ["y"]}))),
        byte_edits(),
    )
        .prop_map(move |(dtype, edits, drop, meta, raw)| {
            let width = if dtype == "F32" { 4 } else { 2 };
            let mut header = serde_json::Map::new();
            let mut at = 0usize;
            for (name, shape) in &tensors {
                let len = shape.iter().product::<usize>() * width;
                header.insert(
                    name.clone(),
                    json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + len]}),
                );
                at += len;
            }
            let names: Vec<String> = header.keys().cloned().collect();
            for (i, field, value) in edits {
                header[&names[i.index(names.len())]][field] = value;
            }
            if let Some(i) = drop {
                header.remove(&names[i.index(names.len())]);
            }
            if let Some(m) = meta {
                header.insert("__metadata__".into(), m);
            }
            let h = serde_json::to_vec(&header).unwrap_or_default();
            let data = (0..at).map(|i| (i % 7) as u8 * 0x11);
            let b = (h.len() as u64).to_le_bytes().into_iter().chain(h).chain(data).collect();
            raw.apply(b)
        })
}

/// What a listed safetensors file may be trusted with: each tensor's byte count is its shape's
/// elements times its dtype's width; the model loads from it or fails naming the file or a
/// tensor, on every call.
fn check_safetensors(bytes: &[u8], path: &Path) -> Result<(bool, bool), TestCaseError> {
    let ckpt = match Checkpoint::from_safetensors_bytes(bytes, path) {
        Ok(c) => c,
        Err(e) => {
            prop_assert!(e.to_string().contains("fuzz.safetensors"), "{e}");
            return Ok((false, false));
        }
    };
    for (name, t) in &ckpt.tensors {
        let n = t.shape.iter().rev().try_fold(1usize, |n, &d| n.checked_mul(d));
        let width = t.dtype.bitsize().div_ceil(8);
        prop_assert_eq!(n.and_then(|n| n.checked_mul(width)), Some(t.byte_len()), "{}", name);
    }
    let device = Device::flex();
    match Gemma4TextModel::load(tiny_config(), &ckpt, &device, DType::F32) {
        Ok(_) => Ok((true, true)),
        Err(e) => {
            let e = e.to_string();
            prop_assert!(e.contains("fuzz.safetensors") || e.contains("tensor "), "{e}");
            Ok((true, false))
        }
    }
}

proptest! {
    #[test]
    fn fuzz_safetensors_in_memory_never_panics_and_what_lists_is_consistent(
        bytes in safetensors_file(),
    ) {
        check_safetensors(&bytes, Path::new("/m/fuzz.safetensors"))?;
    }
}

/// `(first check passed, everything passed)` counts over `n` generated cases.
fn reach<T>(
    strategy: impl Strategy<Value = T>,
    n: usize,
    check: impl Fn(&T) -> Result<(bool, bool), TestCaseError>,
) -> (usize, usize) {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut first, mut all) = (0, 0);
    for _ in 0..n {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        let (a, b) = check(&value).unwrap();
        (first, all) = (first + a as usize, all + b as usize);
    }
    (first, all)
}

#[test]
fn fuzz_generators_reach_past_the_first_check() {
    let (parsed, configured) = reach(gguf_file(), 2000, |b| check_gguf(b, Path::new("fuzz.gguf")));
    println!("GGUF: of 2000, {parsed} parse, {configured} give a config");
    assert!(parsed > 900 && configured > 300, "{parsed} {configured}");
    let (listed, loaded) =
        reach(safetensors_file(), 2000, |b| check_safetensors(b, Path::new("fuzz.safetensors")));
    println!("safetensors: of 2000, {listed} list, {loaded} load");
    assert!(listed > 1000 && loaded > 900, "{listed} {loaded}");
}
