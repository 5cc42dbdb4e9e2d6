//! `load_split`: a JSONL file → tokenised, masked [`Sample`]s with their statistics.
//!
//! Lines are parsed, rendered and tokenised in parallel (rayon) and collected in file order, so
//! the result — and the first error reported — does not depend on the thread count.
//!
//! How each record becomes tokens:
//!
//! | record | text encoded | special tokens | trained (`mask_prompt`) |
//! |---|---|---|---|
//! | chat | `template.render(messages, tools)` | none added (the template writes `<bos>`) | assistant spans ([`crate::mask`]) |
//! | prompt/completion, template | as chat: `[user: prompt, assistant: completion]` | none added | the completion's span |
//! | prompt/completion, no template | `prompt + completion`, then `<eos>` | post-processor (`<bos>`) | completion + `<eos>` |
//! | text | `text`, then `<eos>` | post-processor (`<bos>`) | everything |
//!
//! `<eos>` is appended to untemplated text so the model learns to stop (mlx-lm, TRL do the
//! same). A doubled leading `<bos>` (text that already starts with it) is collapsed to one:
//! Gemma is BOS-sensitive. With `mask_prompt = false` every token but the first is trained.

use crate::config::DataConfig;
use crate::error::{DataError, Location};
use crate::mask::{chat_text_and_spans, targets_from_spans};
use crate::record::{Record, Role, parse_record};
use crate::stats::SplitStats;
use crate::template::ChatTemplate;
use crate::tokenize::{Encoding, Tokenizer};
use rayon::prelude::*;
use serde_json::{Value, json};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Token ids (at most `max_seq_len`).
    pub ids: Vec<u32>,
    /// `target[t]`: token `t` is trained, i.e. predicted from tokens `< t`. `target[0]` is false.
    pub target: Vec<bool>,
    /// The sample was longer than `max_seq_len` and cut.
    pub truncated: bool,
    /// 1-based line in the JSONL file.
    pub line: usize,
}

impl Sample {
    /// Number of trained tokens.
    pub fn target_tokens(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }
}

/// A loaded split: every sample in file order (including those with no target) and its stats.
#[derive(Debug, Clone)]
pub struct Split {
    /// The JSONL file.
    pub path: PathBuf,
    /// Samples in file order. Samples with zero target tokens are kept here (for `--show`) but
    /// never batched.
    pub samples: Vec<Sample>,
    /// Counts and the length histogram.
    pub stats: SplitStats,
}

/// Loads, validates, renders, tokenises and masks one JSONL split.
pub fn load_split(
    path: &Path,
    cfg: &DataConfig,
    template: Option<&ChatTemplate>,
    tok: &Tokenizer,
) -> Result<Split, DataError> {
    cfg.validate()?;
    let bytes = std::fs::read(path)
        .map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8: {e}")),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text); // a UTF-8 BOM some editors write
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    // Collected in file order first, so the error reported is always the FIRST bad line
    // (collecting straight into a Result would return whichever thread failed first).
    let results: Vec<Result<Sample, DataError>> = lines
        .par_iter()
        .map(|&(line, raw)| {
            let at = Location::new(path, line);
            let record = parse_record(raw, &at, cfg)?;
            encode_record(&record, &at, cfg, template, tok)
        })
        .collect();
    let samples = results.into_iter().collect::<Result<Vec<Sample>, DataError>>()?;
    let stats = SplitStats::from_samples(&samples);
    Ok(Split { path: path.to_path_buf(), samples, stats })
}

/// Turns one validated record into a masked, truncated sample.
pub fn encode_record(
    record: &Record,
    at: &Location,
    cfg: &DataConfig,
    template: Option<&ChatTemplate>,
    tok: &Tokenizer,
) -> Result<Sample, DataError> {
    let located = |e: DataError| match e {
        DataError::Template { origin, message } => {
            DataError::Render { at: at.clone(), template: origin, message }
        }
        DataError::Tokenizer { origin, message } => {
            DataError::Tokenizer { origin, message: format!("{at}: {message}") }
        }
        other => other,
    };
    let (enc, spans) = match (record, template) {
        (Record::Chat { messages, roles, tools }, Some(t)) => {
            encode_chat(t, messages, roles, tools.as_ref(), cfg, tok).map_err(located)?
        }
        (Record::Chat { .. }, None) => {
            return Err(DataError::NoTemplate { at: at.clone(), field: cfg.messages_key.clone() });
        }
        (Record::PromptCompletion { prompt, completion }, Some(t)) => {
            let messages = [
                json!({"role": "user", "content": prompt}),
                json!({"role": "assistant", "content": completion}),
            ];
            encode_chat(t, &messages, &[Role::User, Role::Assistant], None, cfg, tok)
                .map_err(located)?
        }
        (Record::PromptCompletion { prompt, completion }, None) => {
            let first = if cfg.mask_prompt { prompt.len() } else { 0 };
            encode_plain(&format!("{prompt}{completion}"), first, tok).map_err(located)?
        }
        (Record::Text { text }, _) => encode_plain(text, 0, tok).map_err(located)?,
    };
    let mut target = targets_from_spans(&enc.offsets, &spans);
    let mut ids = enc.ids;
    let truncated = ids.len() > cfg.max_seq_len;
    ids.truncate(cfg.max_seq_len);
    target.truncate(cfg.max_seq_len);
    Ok(Sample { ids, target, truncated, line: at.line })
}

/// Renders and encodes a conversation; spans are the assistant outputs (or all with no masking).
fn encode_chat(
    t: &ChatTemplate,
    messages: &[Value],
    roles: &[Role],
    tools: Option<&Value>,
    cfg: &DataConfig,
    tok: &Tokenizer,
) -> Result<(Encoding, Vec<Range<usize>>), DataError> {
    let rendered = t.render(&Value::Array(messages.to_vec()), tools, false, cfg.enable_thinking)?;
    let (full, spans) =
        chat_text_and_spans(t, messages, roles, tools, cfg.enable_thinking, &rendered)?;
    let spans = if cfg.mask_prompt { spans } else { std::iter::once(0..full.len()).collect() };
    let enc = collapse_double_bos(tok.encode(&full, false)?, tok.bos_id());
    Ok((enc, spans))
}

/// Encodes text with the post-processor (`<bos>`), appends `<eos>`; trains from byte `first`.
fn encode_plain(
    text: &str,
    first: usize,
    tok: &Tokenizer,
) -> Result<(Encoding, Vec<Range<usize>>), DataError> {
    let mut enc = collapse_double_bos(tok.encode(text, true)?, tok.bos_id());
    if let Some(eos) = tok.eos_id()
        && enc.ids.last() != Some(&eos)
    {
        enc.ids.push(eos);
        enc.offsets.push((text.len(), text.len() + 1));
    }
    // `+ 1` covers the appended `<eos>`, whose offset starts at `text.len()`.
    Ok((enc, std::iter::once(first..text.len() + 1).collect()))
}

fn collapse_double_bos(mut enc: Encoding, bos: Option<u32>) -> Encoding {
    if bos.is_some() && enc.ids.len() >= 2 && enc.ids[0] == enc.ids[1] && Some(enc.ids[0]) == bos {
        enc.ids.remove(0);
        enc.offsets.remove(0);
    }
    enc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::tiny_tokenizer;

    fn sample(
        line: &str,
        cfg: &DataConfig,
        template: Option<&ChatTemplate>,
    ) -> Result<Sample, DataError> {
        let at = Location::new(Path::new("t.jsonl"), 1);
        let tok = tiny_tokenizer();
        encode_record(&parse_record(line, &at, cfg)?, &at, cfg, template, &tok)
    }

    fn trained_text(s: &Sample) -> String {
        let tok = tiny_tokenizer();
        let ids: Vec<u32> =
            s.ids.iter().zip(&s.target).filter(|(_, t)| **t).map(|(i, _)| *i).collect();
        tok.decode(&ids).unwrap()
    }

    #[test]
    fn text_is_trained_in_full_after_a_single_bos_and_ends_with_eos() {
        let cfg = DataConfig::new("t");
        let s = sample(r#"{"text":"<bos>ab"}"#, &cfg, None).unwrap();
        assert_eq!(
            s.ids,
            [
                2,
                tiny_tokenizer().token_to_id("a").unwrap(),
                tiny_tokenizer().token_to_id("b").unwrap(),
                1
            ]
        );
        assert_eq!(s.target, [false, true, true, true]);
    }

    #[test]
    fn untemplated_prompt_completion_trains_only_the_completion_and_eos() {
        let cfg = DataConfig::new("t");
        let s = sample(r#"{"prompt":"Q: ","completion":"yes"}"#, &cfg, None).unwrap();
        assert_eq!(trained_text(&s), "yes<eos>");
    }

    #[test]
    fn templated_prompt_completion_trains_the_answer_and_end_of_turn() {
        let cfg = DataConfig::new("t");
        let t = ChatTemplate::builtin();
        let s = sample(r#"{"prompt":"Reverse: ab","completion":"ba"}"#, &cfg, Some(&t)).unwrap();
        assert_eq!(trained_text(&s), "ba<turn|>");
        assert_eq!(s.ids.iter().filter(|&&i| i == 2).count(), 1, "exactly one <bos>");
    }

    #[test]
    fn chat_without_a_template_is_an_error_naming_the_line() {
        let cfg = DataConfig::new("t");
        let e = sample(r#"{"messages":[{"role":"user","content":"a"}]}"#, &cfg, None).unwrap_err();
        assert!(
            e.to_string().starts_with("t.jsonl:1: chat record (`messages`) but no chat template"),
            "{e}"
        );
    }

    #[test]
    fn long_samples_are_truncated_and_flagged() {
        let mut cfg = DataConfig::new("t");
        cfg.max_seq_len = 4;
        let s = sample(r#"{"text":"abcdef"}"#, &cfg, None).unwrap();
        assert!(s.truncated);
        assert_eq!((s.ids.len(), s.target.len()), (4, 4));
    }

    #[test]
    fn a_conversation_without_assistant_turns_has_no_target() {
        let cfg = DataConfig::new("t");
        let t = ChatTemplate::builtin();
        let s = sample(r#"{"messages":[{"role":"user","content":"a"}]}"#, &cfg, Some(&t)).unwrap();
        assert_eq!(s.target_tokens(), 0);
    }
}
