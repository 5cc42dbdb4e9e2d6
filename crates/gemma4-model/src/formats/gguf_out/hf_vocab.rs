//! A Hugging Face `tokenizer.json` (Gemma's SentencePiece-style BPE) → llama.cpp's tokenizer
//! keys, as llama.cpp's converter writes them (llama-cpp-python 0.3.36's
//! `conversion/gemma.py`, `conversion/base.py` `_create_vocab_sentencepiece`, gguf-py
//! `SpecialVocab`):
//!
//! - `gemma3`: `tokenizer.ggml.model = "llama"` (SentencePiece), `pre = "default"`, tokens,
//!   scores, token types. The converter reads SentencePiece's `tokenizer.model`, whose scores
//!   order the merges; `tokenizer.json` keeps that order as the rank of its merges (HF's
//!   conversion sorts them by score), so a piece's score here is minus the rank of the first
//!   merge that makes it, and a piece no merge makes scores below all of those.
//! - `gemma4`: `"gemma4"` (BPE over the merges, spaces as `▁`), tokens, the same scores (BPE
//!   ignores them), token types, merges, `add_bos_token` true.
//!
//! Token types: `<0xNN>` BYTE; added tokens CONTROL when special or special-looking (`<pad>`,
//! `<mask>`, `<unused…>`, `<|…|>`), otherwise USER_DEFINED with `▁` written as a space (llama.cpp
//! matches those in the raw text); Gemma 4's visible chat markers USER_DEFINED; the rest NORMAL.
//! Ids the tokenizer leaves free, up to the model's `vocab_size`, become `[PADn]` UNUSED; added
//! tokens past it are dropped (the converter drops them too), a vocabulary past it is refused.
//! Special ids, `add_*_token` and the chat template come from `tokenizer_config.json` (then
//! `config.json`, then `chat_template.jinja`), in `SpecialVocab`'s order.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::GgufValue;
use crate::error::{ModelError, Result};

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Gemma 4 markers llama.cpp's converter keeps visible (USER_DEFINED) for its chat parser.
const GEMMA4_VISIBLE: [&str; 7] = [
    "<|channel>",
    "<channel|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    "<|\"|>",
];

/// Special-token kinds in `SpecialVocab`'s order, with llama.cpp's id key.
const SPECIALS: [(&str, &str); 7] = [
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ModelError::Json { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModelError::Io { path: path.to_owned(), source }),
    }
}

fn refuse(key: &str, value: impl ToString, why: &str, path: &Path) -> ModelError {
    ModelError::Unsupported { key: key.into(), value: value.to_string(), hint: Some(why.into()) }
        .in_file(path)
}

/// The tokenizer keys of the export of `arch` (`gemma3` or `gemma4`), from `dir`'s
/// `tokenizer.json` (+ `tokenizer_config.json`, `config.json`, `chat_template.jinja`), with
/// `vocab_size` tokens (the model's embedding rows).
pub fn vocab_of_tokenizer_json(
    dir: &Path,
    arch: &str,
    vocab_size: usize,
) -> Result<Vec<(String, GgufValue)>> {
    let path = dir.join("tokenizer.json");
    let tok = read_json(&path)?
        .ok_or_else(|| ModelError::Input(format!("{}: not found", path.display())))?;
    check_shape(&tok, &path)?;
    let added = added_tokens(&tok, &path)?;
    let merges = merges(&tok, &path)?;
    let (tokens, scores, types) = token_table(&tok, &added, &merges, arch, vocab_size, &path)?;
    let model = if arch == "gemma4" { "gemma4" } else { "llama" };
    let mut out = vec![("tokenizer.ggml.model".to_owned(), GgufValue::Str(model.into()))];
    if model == "llama" {
        out.push(("tokenizer.ggml.pre".into(), GgufValue::Str("default".into())));
    }
    out.push(("tokenizer.ggml.tokens".into(), GgufValue::ArrStr(tokens)));
    out.push(("tokenizer.ggml.scores".into(), GgufValue::ArrF32(scores)));
    out.push(("tokenizer.ggml.token_type".into(), GgufValue::ArrI32(types)));
    if model == "gemma4" {
        let merges = merges.iter().map(|(a, b)| format!("{} {}", gpt2_space(a), gpt2_space(b)));
        out.push(("tokenizer.ggml.merges".into(), GgufValue::ArrStr(merges.collect())));
    }
    out.extend(special_keys(dir, &tok, &added, vocab_size, arch == "gemma4")?);
    let prepend = normalizers(&tok["normalizer"])
        .iter()
        .any(|n| n["type"] == "Prepend" && n["prepend"] == "▁");
    out.push(("tokenizer.ggml.add_space_prefix".into(), GgufValue::Bool(prepend)));
    Ok(out)
}

/// What llama.cpp's Gemma tokenizers can reproduce: BPE with byte fallback over text whose
/// spaces are `▁` (a `Replace(" ", "▁")` normalizer or a `Metaspace` pre-tokenizer).
fn check_shape(tok: &Value, path: &Path) -> Result<()> {
    let model = &tok["model"];
    if model["type"] != "BPE" {
        return Err(refuse("model.type", &model["type"], "llama.cpp's Gemma vocab is BPE", path));
    }
    if model["byte_fallback"] != true {
        let why = "llama.cpp's Gemma vocab falls back to <0xNN> byte tokens";
        return Err(refuse("model.byte_fallback", &model["byte_fallback"], why, path));
    }
    let spaces = normalizers(&tok["normalizer"])
        .iter()
        .any(|n| n["type"] == "Replace" && n["pattern"]["String"] == " " && n["content"] == "▁")
        || normalizers(&tok["pre_tokenizer"]).iter().any(|p| p["type"] == "Metaspace");
    if !spaces {
        let why = "llama.cpp's Gemma tokenizers write spaces as ▁, this tokenizer keeps them, so \
                   llama.cpp would tokenize differently";
        return Err(refuse("normalizer", &tok["normalizer"], why, path));
    }
    Ok(())
}

/// A normalizer (or pre-tokenizer) and the members of a `Sequence`, flattened.
fn normalizers(v: &Value) -> Vec<&Value> {
    let inner = v["normalizers"].as_array().or_else(|| v["pretokenizers"].as_array());
    match inner {
        Some(list) => list.iter().flat_map(normalizers).collect(),
        None => vec![v],
    }
}

/// One added token: id, text, `special`.
type Added = Vec<(usize, String, bool)>;

fn added_tokens(tok: &Value, path: &Path) -> Result<Added> {
    let Some(list) = tok["added_tokens"].as_array() else { return Ok(Vec::new()) };
    list.iter()
        .map(|a| {
            let id = a["id"].as_u64().and_then(|i| usize::try_from(i).ok());
            match (id, a["content"].as_str()) {
                (Some(id), Some(c)) => Ok((id, c.to_owned(), a["special"] == true)),
                _ => {
                    Err(ModelError::invalid("added_tokens", format!("bad entry {a}")).in_file(path))
                }
            }
        })
        .collect()
}

/// `model.merges` as pairs, in rank order (either spelling: `"a b"` or `["a", "b"]`).
fn merges(tok: &Value, path: &Path) -> Result<Vec<(String, String)>> {
    let Some(list) = tok["model"]["merges"].as_array() else { return Ok(Vec::new()) };
    list.iter()
        .map(|m| {
            let pair = match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())),
                Value::Array(p) => match (p.first().and_then(Value::as_str), p.get(1)) {
                    (Some(a), Some(Value::String(b))) if p.len() == 2 => {
                        Some((a.to_owned(), b.clone()))
                    }
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| {
                ModelError::invalid("model.merges", format!("bad merge {m}")).in_file(path)
            })
        })
        .collect()
}

/// gguf-py writes a space inside a merge part as U+0120 (its `SpecialVocab`).
fn gpt2_space(s: &str) -> String {
    s.replace(' ', "\u{120}")
}

fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn is_byte(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// Tokens, scores and types, indexed by id, `vocab_size` long.
fn token_table(
    tok: &Value,
    added: &Added,
    merges: &[(String, String)],
    arch: &str,
    vocab_size: usize,
    path: &Path,
) -> Result<(Vec<String>, Vec<f32>, Vec<i32>)> {
    let mut rank: HashMap<String, usize> = HashMap::with_capacity(merges.len());
    for (i, (a, b)) in merges.iter().enumerate() {
        rank.entry(format!("{a}{b}")).or_insert(i);
    }
    let vocab = tok["model"]["vocab"].as_object().ok_or_else(|| {
        ModelError::invalid("model.vocab", "not an object of token → id").in_file(path)
    })?;
    let unk = tok["model"]["unk_token"].as_str();
    let mut tokens: Vec<Option<(String, f32, i32)>> = vec![None; vocab_size];
    let mut put = |id: usize, entry: (String, f32, i32)| {
        let slot = tokens.get_mut(id).ok_or_else(|| {
            let why = format!("token {:?} has id {id}, the model has {vocab_size} rows", entry.0);
            ModelError::invalid("model.vocab", why).in_file(path)
        })?;
        *slot = Some(entry);
        Ok::<(), ModelError>(())
    };
    let below = -(merges.len() as f32);
    for (text, id) in vocab {
        let id = id.as_u64().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| {
            ModelError::invalid("model.vocab", format!("{text:?}: bad id {id}")).in_file(path)
        })?;
        let entry = if is_byte(text) {
            (text.clone(), 0.0, BYTE)
        } else {
            let score = rank.get(text).map_or(below - id as f32, |&r| -(r as f32));
            (text.clone(), score, if Some(text.as_str()) == unk { UNKNOWN } else { NORMAL })
        };
        put(id, entry)?;
    }
    // Added tokens past the embedding (Gemma 3's `<image_soft_token>`, 262144, of a 262144-row
    // text model) are dropped, as llama.cpp's converter drops them; its id cannot be embedded.
    for (id, text, special) in added.iter().filter(|(id, _, _)| *id < vocab_size) {
        let entry = if arch == "gemma4" && GEMMA4_VISIBLE.contains(&text.as_str()) {
            (text.clone(), -1000.0, USER_DEFINED)
        } else if *special || looks_special(text) {
            (text.clone(), -1000.0, CONTROL)
        } else {
            (text.replace('▁', " "), -1000.0, USER_DEFINED)
        };
        put(*id, entry)?;
    }
    let mut out = (Vec::with_capacity(vocab_size), Vec::new(), Vec::new());
    for (id, t) in tokens.into_iter().enumerate() {
        let (text, score, ty) = t.unwrap_or_else(|| (format!("[PAD{id}]"), -1000.0, UNUSED));
        out.0.push(text);
        out.1.push(score);
        out.2.push(ty);
    }
    Ok(out)
}

/// The content of a `tokenizer_config.json` token entry (a string or `{"content": …}`).
fn content(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

/// Special ids, `add_*_token` flags and the chat template (gguf-py `SpecialVocab`: the
/// tokenizer config first, `config.json`'s `*_token_id` for kinds still missing).
fn special_keys(
    dir: &Path,
    tok: &Value,
    added: &Added,
    vocab_size: usize,
    gemma4: bool,
) -> Result<Vec<(String, GgufValue)>> {
    let tc = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let config = read_json(&dir.join("config.json"))?.unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (kind, key) in SPECIALS {
        let from_tc = content(&tc[format!("{kind}_token")])
            .and_then(|c| added.iter().find(|(_, t, _)| t == c).map(|(id, _, _)| *id as u64));
        let id = from_tc
            .or_else(|| config[format!("{kind}_token_id")].as_u64())
            .or_else(|| config["text_config"][format!("{kind}_token_id")].as_u64());
        if let Some(id) = id.filter(|&i| i < vocab_size as u64).and_then(|i| u32::try_from(i).ok())
        {
            out.push((key.to_owned(), GgufValue::U32(id)));
        }
    }
    // `add_bos_token`: the config's flag, else whether the post-processor puts a token first.
    let template_first = tok["post_processor"]["single"][0]["SpecialToken"]["id"].as_str();
    let add_bos = tc["add_bos_token"].as_bool().or_else(|| {
        let bos = content(&tc["bos_token"]);
        template_first.map(|f| bos.is_none_or(|b| b == f))
    });
    if let Some(b) = add_bos.map(|b| b || gemma4).or(gemma4.then_some(true)) {
        out.push(("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(b)));
    }
    if let Some(b) = tc["add_eos_token"].as_bool() {
        out.push(("tokenizer.ggml.add_eos_token".into(), GgufValue::Bool(b)));
    }
    let template = match tc["chat_template"].as_str() {
        Some(t) => Some(t.to_owned()),
        None => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    if let Some(t) = template {
        out.push(("tokenizer.chat_template".into(), GgufValue::Str(t)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, tok: &Value, config: &Value) {
        std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    }

    fn gemma_like() -> Value {
        let added =
            |id: usize, c: &str, special: bool| json!({"id": id, "content": c, "special": special});
        json!({
            "added_tokens": [added(0, "<pad>", true), added(1, "<eos>", true), added(2, "<bos>", true),
                             added(3, "<unused0>", false), added(4, "▁▁", false), added(99, "<img>", true)],
            "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<bos>"}}, {"Sequence": {"id": "A"}}]},
            "model": {"type": "BPE", "byte_fallback": true, "unk_token": null,
                      "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unused0>": 3, "▁▁": 4,
                                "<0x41>": 5, "▁": 6, "a": 7, "b": 8, "ab": 9, "▁ab": 10},
                      "merges": [["▁", "▁"], ["a", "b"], ["▁", "ab"]]}
        })
    }

    fn get<'a>(keys: &'a [(String, GgufValue)], k: &str) -> &'a GgufValue {
        &keys.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("no {k}")).1
    }

    #[test]
    fn a_gemma_tokenizer_json_becomes_llama_cpp_sentencepiece_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &gemma_like(),
            &json!({"bos_token": "<bos>", "eos_token": "<eos>",
                                                 "pad_token": "<pad>", "chat_template": "T"}),
        );
        let keys = vocab_of_tokenizer_json(dir.path(), "gemma3", 12).unwrap();
        assert_eq!(get(&keys, "tokenizer.ggml.model"), &GgufValue::Str("llama".into()));
        let GgufValue::ArrStr(tokens) = get(&keys, "tokenizer.ggml.tokens") else { panic!() };
        // User-defined `▁▁` matches raw text: written with spaces. Id 11 is free: a pad token;
        // `<img>` (99) is past the 12 rows: dropped.
        assert_eq!(tokens[4], "  ");
        assert_eq!(tokens[11], "[PAD11]");
        let types = get(&keys, "tokenizer.ggml.token_type");
        assert_eq!(types, &GgufValue::ArrI32(vec![3, 3, 3, 3, 4, 6, 1, 1, 1, 1, 1, 5]));
        // Merge ranks: ab 1, ▁ab 2; pieces no merge makes score below every merge.
        let GgufValue::ArrF32(scores) = get(&keys, "tokenizer.ggml.scores") else { panic!() };
        assert_eq!((scores[9], scores[10]), (-1.0, -2.0));
        assert!(scores[7] < -3.0 && scores[8] < scores[7], "{scores:?}");
        assert_eq!(get(&keys, "tokenizer.ggml.bos_token_id"), &GgufValue::U32(2));
        assert_eq!(get(&keys, "tokenizer.ggml.padding_token_id"), &GgufValue::U32(0));
        assert_eq!(get(&keys, "tokenizer.ggml.add_bos_token"), &GgufValue::Bool(true));
        assert_eq!(get(&keys, "tokenizer.chat_template"), &GgufValue::Str("T".into()));
        let gemma4 = vocab_of_tokenizer_json(dir.path(), "gemma4", 12).unwrap();
        assert_eq!(get(&gemma4, "tokenizer.ggml.model"), &GgufValue::Str("gemma4".into()));
        let merges = GgufValue::ArrStr(vec!["▁ ▁".into(), "a b".into(), "▁ ab".into()]);
        assert_eq!(get(&gemma4, "tokenizer.ggml.merges"), &merges);
    }

    #[test]
    fn tokenizers_llama_cpp_would_split_differently_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut tok = gemma_like();
        tok["normalizer"] = Value::Null;
        write(dir.path(), &tok, &json!({}));
        let e = vocab_of_tokenizer_json(dir.path(), "gemma3", 12).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json") && e.contains("`normalizer`"), "{e}");
        tok = gemma_like();
        tok["model"]["type"] = json!("Unigram");
        write(dir.path(), &tok, &json!({}));
        let e = vocab_of_tokenizer_json(dir.path(), "gemma3", 12).unwrap_err().to_string();
        assert!(e.contains("`model.type`"), "{e}");
        write(dir.path(), &gemma_like(), &json!({}));
        let e = vocab_of_tokenizer_json(dir.path(), "gemma3", 8).unwrap_err().to_string();
        assert!(e.contains("`model.vocab`") && e.contains("the model has 8 rows"), "{e}");
    }
}
