//! Fuzzing (proptest) the JSONL path: arbitrary lines and JSON values through `parse_record` →
//! `encode_record` (tiny tokenizer; built-in template, the real Gemma 4 template when
//! `../shared/templates` exists, and none), and whole files through `load_split` → `Batcher`.
//! Properties: nothing panics; every error names `file:line`; every sample is well formed.
//!
//! 256 cases per target by default (CI); longer runs: `PROPTEST_CASES=20000 cargo test -p
//! gemma4-data fuzz` (docs/robustness.md has the command for every crate and the recorded runs).

mod fuzz_common;

use std::path::Path;

use fuzz_common::{arb_json, arb_message, arb_text, templates, tok};
use gemma4_data::{Batcher, DataConfig, Location, encode_record, load_split, parse_record};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A JSONL line: mostly record-shaped, sometimes any JSON, sometimes not JSON at all.
fn arb_line() -> impl Strategy<Value = String> {
    let chat = (proptest::collection::vec(arb_message(), 0..6), proptest::option::of(arb_json()))
        .prop_map(|(messages, tools)| {
            let mut v = json!({"messages": messages});
            if let Some(t) = tools {
                v["tools"] = t;
            }
            v.to_string()
        });
    let text_or_json = || prop_oneof![3 => arb_text().prop_map(Value::String), 1 => arb_json()];
    prop_oneof![
        6 => chat,
        2 => (text_or_json(), text_or_json()).prop_map(|(p, c)| json!({"prompt": p, "completion": c}).to_string()),
        2 => text_or_json().prop_map(|t| json!({"text": t}).to_string()),
        1 => arb_json().prop_map(|v| v.to_string()),
        1 => arb_text(),
        1 => (arb_json(), 0usize..64).prop_map(|(v, cut)| { let s = v.to_string(); s.chars().take(cut).collect() }),
    ]
}

fn arb_config() -> impl Strategy<Value = DataConfig> {
    (2usize..80, any::<bool>(), any::<bool>()).prop_map(
        |(max_seq_len, mask_prompt, enable_thinking)| {
            let mut c = DataConfig::new("fuzz.jsonl");
            (c.max_seq_len, c.mask_prompt, c.enable_thinking) =
                (max_seq_len, mask_prompt, enable_thinking);
            c
        },
    )
}

/// Parse and encode one line with every template (and none): no panic, errors name file:line,
/// samples well formed.
fn check_line(line: &str, line_no: usize, cfg: &DataConfig) -> Result<(), TestCaseError> {
    let at = Location::new(Path::new("fuzz.jsonl"), line_no);
    let place = format!("fuzz.jsonl:{line_no}");
    let record = match parse_record(line, &at, cfg) {
        Ok(r) => r,
        Err(e) => {
            prop_assert!(e.to_string().contains(&place), "{e}");
            return Ok(());
        }
    };
    for template in templates().iter().map(Some).chain([None]) {
        match encode_record(&record, &at, cfg, template, tok()) {
            Ok(s) => {
                prop_assert_eq!(s.ids.len(), s.target.len());
                prop_assert!(s.ids.len() <= cfg.max_seq_len);
                prop_assert!(
                    !s.target.first().copied().unwrap_or(false),
                    "the first token is never a target"
                );
                prop_assert!(s.ids.iter().all(|&i| (i as usize) < tok().vocab_size()));
                prop_assert_eq!(s.line, line_no);
            }
            Err(e) => prop_assert!(e.to_string().contains(&place), "{e}"),
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_record_lines_never_panic_and_errors_name_the_line(line in arb_line(), line_no in 1usize..100_000, cfg in arb_config()) {
        check_line(&line, line_no, &cfg)?;
    }

    #[test]
    fn fuzz_raw_bytes_as_a_line_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), cfg in arb_config()) {
        check_line(&String::from_utf8_lossy(&bytes), 1, &cfg)?;
    }

    /// Whole files: blank lines, a BOM, CRLF, invalid UTF-8; then batching, packed or not.
    #[test]
    fn fuzz_jsonl_files_load_and_batch_or_fail_naming_the_file(
        lines in proptest::collection::vec(prop_oneof![4 => arb_line(), 1 => Just(String::new())], 0..6),
        bom in any::<bool>(), crlf in any::<bool>(), junk in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..8)),
        cfg in arb_config(), packing in any::<bool>(), batch_size in 1usize..5, seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.jsonl");
        let mut bytes = if bom { "\u{feff}".as_bytes().to_vec() } else { Vec::new() };
        bytes.extend(lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes());
        if let Some(j) = junk {
            bytes.extend(j);
        }
        std::fs::write(&path, &bytes).unwrap();
        match load_split(&path, &cfg, Some(&templates()[0]), tok()) {
            Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()) || e.to_string().contains("tokenizer tiny"), "{e}"),
            Ok(split) => {
                prop_assert_eq!(split.stats.samples, split.samples.len());
                let batcher = Batcher::new(&split, batch_size, packing, cfg.max_seq_len).unwrap();
                let batches = batcher.epoch(0, seed);
                let targets: usize = batches.iter().map(|b| b.target_tokens).sum();
                prop_assert_eq!(targets, split.stats.target_tokens);
                for b in &batches {
                    prop_assert!(b.target_tokens > 0 && b.batch <= batch_size && b.seq <= cfg.max_seq_len);
                    prop_assert_eq!(b.ids.len(), b.batch * b.seq);
                }
            }
        }
    }
}

/// Deep nesting is serde_json's recursion-limit error, not a stack overflow.
#[test]
fn deeply_nested_lines_are_errors_not_crashes() {
    let cfg = DataConfig::new("fuzz.jsonl");
    for line in [
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{{\"messages\": {}", "[{\"content\": ".repeat(50_000)),
    ] {
        let e = parse_record(&line, &Location::new(Path::new("fuzz.jsonl"), 3), &cfg).unwrap_err();
        assert!(e.to_string().starts_with("fuzz.jsonl:3: malformed JSON"), "{e}");
    }
}

/// The generator reaches every stage (not only parse errors): counts over 500 lines.
#[test]
fn fuzz_generator_reaches_encoding() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut parsed, mut encoded, mut targets) = (0, 0, 0);
    for _ in 0..500 {
        let line = arb_line().new_tree(&mut runner).unwrap().current();
        let cfg = DataConfig::new("fuzz.jsonl");
        let at = Location::new(Path::new("fuzz.jsonl"), 1);
        if let Ok(r) = parse_record(&line, &at, &cfg) {
            parsed += 1;
            if let Ok(s) = encode_record(&r, &at, &cfg, Some(&templates()[0]), tok()) {
                encoded += 1;
                targets += (s.target_tokens() > 0) as usize;
            }
        }
    }
    println!("of 500 lines: {parsed} parsed, {encoded} encoded, {targets} with targets");
    assert!(parsed >= 100 && encoded >= 100 && targets >= 50, "{parsed} {encoded} {targets}");
}
