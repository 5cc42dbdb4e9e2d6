//! Fuzzing (proptest) `tokenizer.json` in memory (issue 16): the tiny tokenizer with Gemma-like
//! parts added (a `Replace` normalizer, a `Split` pre-tokenizer), then 0–3 of its values
//! replaced: model types and their parameters (`unk_token` missing from the vocabulary, dropout
//! out of range, merges naming unknown tokens), ids past the vocabulary or negative, regex
//! patterns that backtrack, post-processor special tokens that do not exist; then sometimes cut
//! or byte-edited. Nothing panics or hangs; errors name the file; a tokenizer that loads
//! encodes and decodes text (special tokens, Unicode, empty) or fails naming the file.
//!
//! 256 cases by default; the recorded run (docs/robustness.md §7):
//! `PROPTEST_CASES=1000000 cargo test -p gemma4-data --test fuzz_tokenizer -- --exact NAME`.

use gemma4_data::{Tokenizer, tiny_tokenizer_json};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

const ORIGIN: &str = "/m/tokenizer.json";

/// The tiny tokenizer with a normalizer and a pre-tokenizer (as Gemma's has).
fn base() -> Value {
    let mut t: Value = serde_json::from_str(&tiny_tokenizer_json()).unwrap_or_default();
    t["normalizer"] = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    t["pre_tokenizer"] = json!({"type": "Split", "pattern": {"String": "\n"}, "behavior": "Isolated", "invert": false});
    t
}

/// A hostile replacement for one value of the tokenizer.
fn hostile() -> impl Strategy<Value = (&'static str, Value)> {
    let pattern =
        prop::sample::select(vec!["(a+)+$", "(?=a)", "\\", "[", "(?<x>a)\\k<x>", "", "▁"]);
    prop_oneof![
        Just(("/model/unk_token", json!("<nope>"))),
        Just(("/model/unk_token", json!(null))),
        prop::sample::select(vec![-1.0, 0.0, 0.5, 1.0, 2.0, 1e300])
            .prop_map(|d| ("/model/dropout", json!(d))),
        Just(("/model/merges", json!([["zz", "qq"], ["a"], "a b", 5]))),
        Just(("/model/vocab", json!({"a": -1, "b": 1u64 << 40, "<unk>": 0}))),
        Just(("/model/vocab", json!({}))),
        Just(("/model/vocab", json!([["a", f64::NAN], ["<unk>", 0.0]]))),
        prop::sample::select(vec!["BPE", "WordPiece", "WordLevel", "Unigram", "Nope"])
            .prop_map(|t| ("/model/type", json!(t))),
        Just(("/model", json!({"type": "Unigram", "unk_id": 99, "vocab": [["<unk>", 0.0]]}))),
        Just(("/model", json!({"type": "Unigram", "unk_id": null, "vocab": []}))),
        Just((
            "/model",
            json!({"type": "WordPiece", "unk_token": "<unk>", "vocab": {"<unk>": 0}, "max_input_chars_per_word": 0})
        )),
        Just(("/model/byte_fallback", json!("yes"))),
        (any::<u32>(), any::<bool>()).prop_map(|(id, special)| (
            "/added_tokens/0",
            json!({"id": id, "content": "<x>", "single_word": false, "lstrip": true,
                   "rstrip": true, "normalized": !special, "special": special})
        )),
        Just(("/added_tokens/0/content", json!(""))),
        Just(("/added_tokens/0/id", json!(-3))),
        pattern.clone().prop_map(|p| ("/normalizer/pattern", json!({"Regex": p}))),
        pattern.prop_map(|p| ("/pre_tokenizer/pattern", json!({"Regex": p}))),
        prop::sample::select(vec!["Removed", "MergedWithPrevious", "Contiguous", "x"])
            .prop_map(|b| ("/pre_tokenizer/behavior", json!(b))),
        Just((
            "/pre_tokenizer",
            json!({"type": "Metaspace", "replacement": "", "prepend_scheme": "always"})
        )),
        Just((
            "/pre_tokenizer",
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})
        )),
        Just((
            "/normalizer",
            json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Prepend", "prepend": "▁"}]})
        )),
        Just(("/post_processor/special_tokens/<bos>/ids", json!([4_000_000_000u64]))),
        Just(("/post_processor/special_tokens/<bos>/id", json!("<nope>"))),
        Just(("/post_processor/single", json!([{"SpecialToken": {"id": "<nope>", "type_id": 0}}]))),
        Just(("/post_processor", json!({"type": "ByteLevel", "trim_offsets": true}))),
        Just(("/decoder", json!({"type": "Strip", "content": "▁", "start": 99, "stop": 99}))),
        Just((
            "/decoder",
            json!({"type": "Replace", "pattern": {"Regex": "(a+)+$"}, "content": ""})
        )),
        Just((
            "/truncation",
            json!({"max_length": 0, "stride": 5, "strategy": "LongestFirst", "direction": "Right"})
        )),
        Just((
            "/padding",
            json!({"strategy": {"Fixed": 1u64 << 20}, "direction": "Right", "pad_to_multiple_of": 0, "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"})
        )),
        any::<u64>().prop_map(|v| ("/version", json!(v))),
    ]
}

/// Raw edits of the text: a few bytes overwritten, maybe a cut (none in most cases).
type Raw = Option<(Option<Index>, Vec<(Index, u8)>)>;

fn raw() -> impl Strategy<Value = Raw> {
    let sets = prop::collection::vec((any::<Index>(), any::<u8>()), 0..3);
    prop::option::weighted(0.15, (prop::option::of(any::<Index>()), sets))
}

fn tokenizer_file() -> impl Strategy<Value = Vec<u8>> {
    let t = base();
    (prop::collection::vec(hostile(), 0..4), raw()).prop_map(move |(edits, raw)| {
        let mut t = t.clone();
        for (pointer, v) in edits {
            if let Some(slot) = t.pointer_mut(pointer) {
                *slot = v;
            }
        }
        let mut b = serde_json::to_vec(&t).unwrap_or_default();
        if let Some((cut, sets)) = raw {
            for (at, byte) in sets {
                let i = at.index(b.len());
                b[i] = byte;
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len()));
            }
        }
        b
    })
}

const TEXTS: &[&str] =
    &["", "a b ab", "<bos><x>ab\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "é 日本 🤗 \u{0}", "▁▁"];

/// `(loaded, encoded every text)`.
fn check(bytes: &[u8]) -> Result<(bool, bool), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    let tok = match Tokenizer::from_json_str(&text, ORIGIN) {
        Ok(t) => t,
        Err(e) => {
            prop_assert!(e.to_string().contains(ORIGIN), "{e}");
            return Ok((false, false));
        }
    };
    let mut all = true;
    for s in TEXTS {
        match tok.encode(s, true) {
            Ok(enc) => {
                prop_assert_eq!(enc.ids.len(), enc.offsets.len());
                if let Err(e) = tok.decode(&enc.ids) {
                    prop_assert!(e.to_string().contains(ORIGIN), "{e}");
                }
            }
            Err(e) => {
                prop_assert!(e.to_string().contains(ORIGIN), "{e}");
                all = false;
            }
        }
    }
    let _ = (tok.vocab_size(), tok.bos_id(), tok.eos_id(), tok.pad_id());
    Ok((true, all))
}

proptest! {
    #[test]
    fn fuzz_tokenizer_json_never_panics_and_errors_name_the_file(bytes in tokenizer_file()) {
        check(&bytes)?;
    }
}

#[test]
fn fuzz_generator_reaches_a_loaded_tokenizer() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let s = tokenizer_file();
    let base = serde_json::to_vec(&base()).unwrap();
    let text = String::from_utf8_lossy(&base);
    if let Err(e) = Tokenizer::from_json_str(&text, ORIGIN) {
        panic!("the base tokenizer: {e}");
    }
    assert_eq!(check(&base).unwrap(), (true, true), "the base tokenizer loads and encodes");
    let (mut loaded, mut encoded) = (0, 0);
    for _ in 0..1000 {
        let (l, e) = check(&s.new_tree(&mut runner).unwrap().current()).unwrap();
        (loaded, encoded) = (loaded + l as usize, encoded + e as usize);
    }
    println!("of 1000 tokenizer.json files, {loaded} load and {encoded} encode every text");
    assert!(loaded > 400 && encoded > 300, "{loaded} {encoded}");
}
