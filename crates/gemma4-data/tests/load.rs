//! `load_split` end to end: the quickstart dataset, error reporting, determinism, batching.

use gemma4_data::{
    Batcher, ChatTemplate, DataConfig, DataError, load_split, show_sample, tiny_tokenizer,
};
use std::path::{Path, PathBuf};

fn quickstart(split: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/quickstart")
        .join(format!("{split}.jsonl"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn load(path: &Path, cfg: &DataConfig) -> Result<gemma4_data::Split, DataError> {
    load_split(path, cfg, Some(&ChatTemplate::builtin()), &tiny_tokenizer())
}

#[test]
fn quickstart_splits_load_short_and_fully_targeted() {
    let mut cfg = DataConfig::new(quickstart("train"));
    cfg.max_seq_len = 96;
    for (split, n) in [("train", 300), ("valid", 60), ("test", 60)] {
        let s = load(&quickstart(split), &cfg).unwrap();
        assert_eq!(s.stats.samples, n, "{split}");
        assert_eq!((s.stats.truncated, s.stats.no_target), (0, 0), "{split}");
        assert!(s.stats.max_len <= 96, "{split}: {}", s.stats.max_len);
    }
    let s = load(&quickstart("train"), &cfg).unwrap();
    let shown = show_sample(&s.samples[2], &tiny_tokenizer());
    assert!(shown.ends_with("<|turn>user\nUpper: aba<turn|>\n<|turn>model\n<|channel>thought\n<channel|>⟦ABA<turn|>⟧\n"), "{shown}");
}

#[test]
fn errors_name_the_file_and_the_first_bad_line_counting_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DataConfig::new("x");
    let good = r#"{"text": "ok"}"#;
    let p = write(dir.path(), "bad.jsonl", &format!("{good}\n\n{{\"text\": 5}}\n{good}\n{{oops\n"));
    let e = load(&p, &cfg).unwrap_err().to_string();
    assert_eq!(e, format!("{}:3: field `text`: expected a string, found a number", p.display()));

    let empty = write(dir.path(), "empty.jsonl", "\n  \n");
    assert!(
        load(&empty, &cfg)
            .unwrap_err()
            .to_string()
            .ends_with("no records (the file is empty or has only blank lines)")
    );
    let missing = dir.path().join("nope.jsonl");
    assert!(
        load(&missing, &cfg)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display()))
    );
}

#[test]
fn formats_can_be_mixed_and_text_is_trained_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let text = concat!(
        r#"{"text": "abc"}"#,
        "\n",
        r#"{"prompt": "Q", "completion": "A"}"#,
        "\n",
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#,
        "\n",
    );
    let s = load(&write(dir.path(), "mixed.jsonl", text), &DataConfig::new("x")).unwrap();
    let tok = tiny_tokenizer();
    assert!(show_sample(&s.samples[0], &tok).ends_with("<bos>⟦abc<eos>⟧\n"));
    assert!(
        show_sample(&s.samples[1], &tok)
            .ends_with("model\n<|channel>thought\n<channel|>⟦A<turn|>⟧\n")
    );
    assert_eq!(s.samples.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn tokenisation_is_identical_on_one_thread_and_many() {
    let cfg = DataConfig::new("x");
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let many = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let a = one.install(|| load(&quickstart("valid"), &cfg).unwrap());
    let b = many.install(|| load(&quickstart("valid"), &cfg).unwrap());
    assert_eq!(a.samples, b.samples);
    assert_eq!(a.stats, b.stats);
}

#[test]
fn unmasked_chat_trains_everything_but_the_first_token() {
    let mut cfg = DataConfig::new("x");
    cfg.mask_prompt = false;
    let s = load(&quickstart("valid"), &cfg).unwrap();
    assert!(s.samples.iter().all(|x| x.target_tokens() == x.ids.len() - 1));
}

#[test]
fn every_quickstart_token_is_batched_exactly_once_per_epoch_with_and_without_packing() {
    let cfg = DataConfig::new("x");
    let s = load(&quickstart("train"), &cfg).unwrap();
    let batchable = s.samples.iter().filter(|x| x.target_tokens() > 0);
    let want = batchable.fold((0, 0), |(n, t), x| (n + x.ids.len(), t + x.target_tokens()));
    for packing in [false, true] {
        let batches = Batcher::new(&s, 8, packing, 96).unwrap().epoch(0, 3);
        let real: usize =
            batches.iter().map(|b| b.attention_mask.iter().filter(|&&m| m).count()).sum();
        let trained: usize = batches.iter().map(|b| b.target_tokens).sum();
        assert_eq!((real, trained), want, "packing {packing}");
        assert!(batches.iter().all(|b| b.ids.len() == b.batch * b.seq && b.seq <= 96));
    }
}

/// Gemma 4's non-thinking generation prompt ends in an empty thought channel that the rendered
/// conversation lacks; the training text gets it (untrained) before each answer, so the model
/// learns to answer after exactly the prefix inference feeds.
#[test]
fn training_text_contains_the_generation_prompt_before_each_answer() {
    let t = gemma4_data::ChatTemplate::builtin();
    let tok = gemma4_data::tiny_tokenizer();
    let cfg = gemma4_data::DataConfig::new("x");
    let at = gemma4_data::Location::new(std::path::Path::new("x.jsonl"), 1);
    let messages = serde_json::json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]);
    let line = serde_json::json!({ "messages": messages }).to_string();
    let s = gemma4_data::encode_record(
        &gemma4_data::parse_record(&line, &at, &cfg).unwrap(),
        &at,
        &cfg,
        Some(&t),
        &tok,
    )
    .unwrap();
    let text = tok.decode(&s.ids).unwrap();
    let prompt = t
        .render(&serde_json::json!([{"role": "user", "content": "Hi"}]), None, true, false)
        .unwrap();
    assert!(
        text.starts_with(&prompt),
        "{text:?} should start with the inference prompt {prompt:?}"
    );
    let shown = gemma4_data::show_sample(&s, &tok);
    assert!(shown.contains("⟦Hello<turn|>⟧"), "{shown}");
}
