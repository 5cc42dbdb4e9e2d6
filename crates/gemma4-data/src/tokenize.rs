//! `Tokenizer`: a checkpoint's `tokenizer.json` through HF's `tokenizers` crate.
//!
//! Offsets are **byte** offsets into the encoded text (what `tokenizers` returns by default);
//! mask spans are byte spans too, so the two meet without conversion. Special-token handling
//! follows transformers: `encode(text, true)` runs the post-processor (Gemma's adds `<bos>`);
//! chat-rendered text is encoded with `false`, because the template writes `<bos>` itself.

use crate::error::DataError;
use std::path::Path;

/// Token ids with the byte span each token covers in the encoded text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `(start, end)` byte offsets of each token in the text; `(0, 0)` for tokens the
    /// post-processor adds (BOS).
    pub offsets: Vec<(usize, usize)>,
}

/// A loaded tokenizer plus the ids of the special tokens the pipeline needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    origin: String,
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        let origin = path.display().to_string();
        if !path.is_file() {
            let message =
                "file not found (hint: the model directory needs the checkpoint's tokenizer.json)"
                    .into();
            return Err(DataError::Tokenizer { origin, message });
        }
        let json = std::fs::read_to_string(path)
            .map_err(|e| DataError::Tokenizer { origin: origin.clone(), message: e.to_string() })?;
        Self::from_json_str(&json, &origin)
    }

    /// Loads a tokenizer from the text of a `tokenizer.json`; `origin` names it in errors.
    ///
    /// Checked first (issue 16, fuzz findings): the text is JSON (on some malformed JSON
    /// `tokenizers` panics, its decoder's helper `expect`s), and the post-processor is
    /// consistent ([`check_post_processor`]). The file's truncation and padding are dropped, as
    /// transformers resets them before every call (a `max_length` below the special tokens
    /// overflowed); `[data] max_seq_len` truncates, and counts it.
    pub fn from_json_str(json: &str, origin: &str) -> Result<Self, DataError> {
        let error = |message: String| DataError::Tokenizer { origin: origin.into(), message };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| error(e.to_string()))?;
        check_post_processor(value.get("post_processor")).map_err(error)?;
        for part in ["normalizer", "pre_tokenizer", "decoder"] {
            value.get(part).map_or(Ok(()), |v| check_patterns(part, v)).map_err(error)?;
        }
        let mut inner: tokenizers::Tokenizer =
            json.parse().map_err(|e: tokenizers::Error| error(e.to_string()))?;
        inner.with_truncation(None).map_err(|e| error(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner, origin: origin.into() })
    }

    /// Encodes `text`; with `add_special_tokens` the post-processor runs (Gemma: `<bos>` first).
    /// Special-token strings inside `text` (`<|turn>`, …) become their single ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoding, DataError> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| self.error(e))?;
        Ok(Encoding { ids: enc.get_ids().to_vec(), offsets: enc.get_offsets().to_vec() })
    }

    /// Decodes ids to text, special tokens included (what the model actually sees).
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner.decode(ids, false).map_err(|e| self.error(e))
    }

    /// The id of a token string (`"<eos>"`), including added tokens.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens (the embedding needs at least this many rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Gemma's `<bos>`, if the vocabulary has it.
    pub fn bos_id(&self) -> Option<u32> {
        self.token_to_id("<bos>")
    }

    /// Gemma's `<eos>`, if the vocabulary has it (appended to `text` / plain completions).
    pub fn eos_id(&self) -> Option<u32> {
        self.token_to_id("<eos>")
    }

    /// Gemma's `<pad>`, if the vocabulary has it.
    pub fn pad_id(&self) -> Option<u32> {
        self.token_to_id("<pad>")
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn error(&self, e: tokenizers::Error) -> DataError {
        DataError::Tokenizer { origin: self.origin.clone(), message: e.to_string() }
    }
}

/// What `tokenizers` accepts when it reads a `TemplateProcessing` post-processor but indexes
/// without a check when it encodes (issue 16, a fuzz finding: a panic, "no entry found for
/// key"): every special token of a template is in its `special_tokens`, with as many ids as
/// tokens, and `single` uses sequence `A` only.
fn check_post_processor(processor: Option<&serde_json::Value>) -> Result<(), String> {
    // Every object that has a template, whatever its `type` says: `tokenizers` also reads
    // processors without a `type` tag.
    let mut stack: Vec<&serde_json::Value> = processor.into_iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(o) => {
                if o.contains_key("single") || o.contains_key("pair") {
                    check_template(v)?;
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Texts a `Replace`/`Split` pattern is tried on.
const PROBES: &[&str] = &["", "a", " ", "a b\n", "\u{2581}a", "\u{e9}\u{65e5}"];

/// The `Replace` and `Split` patterns under `part` (`normalizer`, …) cannot match the empty
/// string (issue 16, a fuzz finding: an empty `Replace` pattern made `tokenizers` index past
/// its alignments and panic). A pattern that does not compile is left for `tokenizers` to report.
fn check_patterns(part: &str, v: &serde_json::Value) -> Result<(), String> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(o) => {
                let empty = match o.get("pattern") {
                    Some(p) if p.get("String").and_then(|s| s.as_str()) == Some("") => true,
                    Some(p) => p.get("Regex").and_then(|r| r.as_str()).is_some_and(matches_empty),
                    None => false,
                };
                if empty {
                    return Err(format!(
                        "{part}: pattern {} can match the empty string",
                        o["pattern"]
                    ));
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    Ok(())
}

fn matches_empty(regex: &str) -> bool {
    let Ok(re) = fancy_regex::Regex::new(regex) else { return false };
    PROBES.iter().any(|t| re.find_iter(t).any(|m| m.is_ok_and(|m| m.as_str().is_empty())))
}

fn check_template(p: &serde_json::Value) -> Result<(), String> {
    let special = p.get("special_tokens").and_then(|v| v.as_object());
    for (key, t) in special.into_iter().flatten() {
        let len = |k: &str| t.get(k).and_then(|v| v.as_array()).map(Vec::len);
        if len("ids") != len("tokens") {
            return Err(format!(
                "post_processor: special token {key:?} has {:?} ids but {:?} tokens",
                len("ids"),
                len("tokens")
            ));
        }
    }
    for part in ["single", "pair"] {
        for piece in p.get(part).and_then(|v| v.as_array()).into_iter().flatten() {
            if let Some(id) = piece.pointer("/SpecialToken/id").and_then(|v| v.as_str())
                && !special.is_some_and(|s| s.contains_key(id))
            {
                return Err(format!(
                    "post_processor: the `{part}` template's special token {id:?} is not in `special_tokens`"
                ));
            }
            if part == "single"
                && piece.pointer("/Sequence/id").and_then(|v| v.as_str()) == Some("B")
            {
                return Err("post_processor: the `single` template uses sequence B".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::tiny_tokenizer;

    #[test]
    fn missing_file_error_names_the_path_and_gives_a_hint() {
        let e =
            Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err().to_string();
        assert!(
            e.starts_with("tokenizer /nonexistent/tokenizer.json: file not found (hint:"),
            "{e}"
        );
    }

    #[test]
    fn offsets_are_byte_spans_of_the_input() {
        let tok = tiny_tokenizer();
        let text = "a<|turn>é";
        let enc = tok.encode(text, false).unwrap();
        for (id, &(s, e)) in enc.ids.iter().zip(&enc.offsets) {
            let piece = &text[s..e];
            assert!(!piece.is_empty(), "token {id} has an empty span");
        }
        assert_eq!(enc.offsets[1], (1, 8), "<|turn> is one token over its 7 bytes");
    }

    #[test]
    fn special_tokens_flag_controls_bos() {
        let tok = tiny_tokenizer();
        let with = tok.encode("hi", true).unwrap();
        let without = tok.encode("hi", false).unwrap();
        assert_eq!(with.ids[0], tok.bos_id().unwrap());
        assert_eq!(&with.ids[1..], &without.ids[..]);
    }
}
