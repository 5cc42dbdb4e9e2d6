//! Issue 18: a Hugging Face `tokenizer.json` converted into a GGUF's vocabulary keys
//! (`gguf_out::vocab_of_tokenizer_json`), checked against llama.cpp without llama.cpp at test
//! time. `tests/reference/gguf_export.py` (`gguf_tokenizer.py`) exported the tiny fixtures with
//! the tiny SentencePiece-style tokenizer (`tests/fixtures/gguf_export/tokenizer`) and the real
//! Gemma 3 tokenizer, ran llama.cpp's tokenizer on them and stored its ids in
//! `tests/fixtures/gguf_export/tokenization.json`; here `tokenizers` (the crate the trainer
//! uses) must give the same ids, and the exports must be the files llama.cpp ran.

use std::path::{Path, PathBuf};

use gemma4_data::Tokenizer;
use gemma4_model::gguf_out::{GgufValue, vocab_of_tokenizer_json};
use gemma4_model::{GgufHeader, MetaValue};
use serde_json::Value;

mod common;
use common::*;

fn golden() -> Value {
    let path = repo().join("tests/fixtures/gguf_export/tokenization.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect())
        .collect()
}

/// `tokenizers`' ids for `strings` (specials parsed, none added) against llama.cpp's.
fn assert_same_ids(tokenizer: &Path, strings: &[String], llama: &[Vec<u32>], what: &str) {
    let tok = Tokenizer::from_file(tokenizer).unwrap();
    assert_eq!(strings.len(), llama.len());
    for (s, want) in strings.iter().zip(llama) {
        assert_eq!(&tok.encode(s, false).unwrap().ids, want, "{what}: {s:?}");
    }
}

/// A copy of fixture `fx` with the tiny tokenizer beside it.
fn with_tiny_tokenizer(fx: &str, dir: &Path) -> PathBuf {
    let model = dir.join(fx);
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(fx).join(f), model.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("gguf_export/tokenizer").join(f), model.join(f)).unwrap();
    }
    model
}

#[test]
fn tokenizer_json_exports_tokenize_as_tokenizers_does_in_llama_cpp() {
    let gold = golden();
    let texts = strings(&gold["tiny_strings"]);
    let dir = tempfile::tempdir().unwrap();
    for fx in ["dense", "gemma3_dense"] {
        let model = with_tiny_tokenizer(fx, dir.path());
        let out = dir.path().join(format!("{fx}-tok.gguf"));
        let mut cmd = bin();
        cmd.args(["fuse", "--quant", "f32", "--model"]).arg(&model).arg("--gguf").arg(&out);
        let (o, _, stderr) = run(&mut cmd);
        assert!(o.status.success(), "{fx}: {stderr}");
        let bytes = std::fs::read(&out).unwrap();
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        assert_eq!(
            Some(format!("{hash:016x}").as_str()),
            gold[fx]["fnv1a64"].as_str(),
            "{fx}: the export changed since llama.cpp ran it (rerun tests/reference/gguf_export.py)"
        );
        let header = GgufHeader::parse(&bytes, &out).unwrap();
        let model_key = if fx == "dense" { "gemma4" } else { "llama" };
        assert_eq!(header.metadata["tokenizer.ggml.model"], MetaValue::Str(model_key.into()));
        assert_same_ids(&model.join("tokenizer.json"), &texts, &ids(&gold[fx]["ids"]), fx);
    }
}

#[test]
fn a_tokenizer_that_keeps_spaces_is_refused_before_writing() {
    // The built-in tiny tokenizer has no `▁` normalizer: llama.cpp's Gemma tokenizers would
    // split its text differently, so the export refuses it, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let model = with_tiny_tokenizer("dense", dir.path());
    std::fs::write(model.join("tokenizer.json"), gemma4_data::tiny_tokenizer_json()).unwrap();
    let out = dir.path().join("x.gguf");
    let mut cmd = bin();
    cmd.args(["fuse", "--model"]).arg(&model).arg("--gguf").arg(&out);
    let (o, _, stderr) = run(&mut cmd);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("normalizer") && stderr.contains("tokenizer.json"), "{stderr}");
    assert!(!out.exists());
}

fn arr<'a>(h: &'a GgufHeader, key: &str) -> &'a [MetaValue] {
    match &h.metadata[key] {
        MetaValue::Array(a) => a,
        v => panic!("{key}: {v:?}"),
    }
}

fn our_arr<'a>(keys: &'a [(String, GgufValue)], key: &str) -> &'a GgufValue {
    &keys.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn the_real_gemma3_tokenizer_converts_as_llama_cpp_converted_tokenizer_model() {
    let dir = repo().join("models/gemma3-270m");
    let official = dir.join("gemma-3-270m-q4_k_m.gguf");
    if !dir.join("tokenizer.json").is_file() || !official.is_file() {
        eprintln!("SKIPPED: no models/gemma3-270m (tests/reference/fetch_gemma3_270m.sh)");
        return;
    }
    let ours = vocab_of_tokenizer_json(&dir, "gemma3", 262_144).unwrap();
    let map = std::fs::read(&official).unwrap();
    let h = GgufHeader::parse(&map, &official).unwrap();
    let (GgufValue::ArrStr(tokens), GgufValue::ArrI32(types), GgufValue::ArrF32(scores)) = (
        our_arr(&ours, "tokenizer.ggml.tokens"),
        our_arr(&ours, "tokenizer.ggml.token_type"),
        our_arr(&ours, "tokenizer.ggml.scores"),
    ) else {
        panic!("tokenizer keys of the wrong type")
    };
    let (their_tokens, their_types, their_scores) = (
        arr(&h, "tokenizer.ggml.tokens"),
        arr(&h, "tokenizer.ggml.token_type"),
        arr(&h, "tokenizer.ggml.scores"),
    );
    let mut type_diff = 0;
    let mut last_normal: Option<(f64, f32)> = None;
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(their_tokens[i].as_str(), Some(t.as_str()), "token {i}");
        if their_types[i] != MetaValue::Int(i128::from(types[i])) {
            type_diff += 1;
        }
        // SentencePiece's scores order the NORMAL pieces; ours must keep that order.
        if types[i] == 1 && their_types[i] == MetaValue::Int(1) {
            let theirs = their_scores[i].as_f64().unwrap();
            if let Some((t_prev, o_prev)) = last_normal {
                assert_eq!(theirs < t_prev, scores[i] < o_prev, "score order at token {i} {t:?}");
            }
            last_normal = Some((theirs, scores[i]));
        }
    }
    assert_eq!(tokens.len(), their_tokens.len());
    // 2: <start_of_image>/<end_of_image>, special in tokenizer.json, user-defined in tokenizer.model.
    assert!(type_diff <= 2, "{type_diff} token types differ from the official GGUF's");
    let gold = golden();
    if gold["gemma3_270m"].is_object() {
        let texts = strings(&gold["real_strings"]);
        assert_same_ids(
            &dir.join("tokenizer.json"),
            &texts,
            &ids(&gold["gemma3_270m"]["ids"]),
            "270m",
        );
    }
}
