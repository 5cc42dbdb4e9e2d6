//! The tiny tokenizer: a Gemma-4-shaped vocabulary of 377 tokens the repo builds itself.
//!
//! For tests and the quickstart model, where a real 262k-token `tokenizer.json` is neither
//! available nor wanted. Shape follows Gemma's `tokenizer.json`: a BPE model with
//! `byte_fallback` (here with no merges, so ASCII is one token per character and anything else
//! falls back to `<0xNN>` byte tokens), every Gemma 4 special token of spec §6.1 as an added
//! special token, and a `TemplateProcessing` post-processor that puts `<bos>` first.
//!
//! The JSON loads unchanged in Python (`PreTrainedTokenizerFast(tokenizer_file=…)`) and encodes
//! to the same ids there.
//!
//! Special tokens whose Gemma id is below the vocabulary size keep that id (`<pad>` 0, `<eos>` 1,
//! `<bos>` 2, `<|tool_response>` 50, `<|turn>` 105, `<turn|>` 106, `"\n"` 107, …), so stop-token
//! lists such as `eos_token_id = [1, 106, 50]` carry over unchanged.

use crate::tokenize::Tokenizer;
use serde_json::{Value, json};

/// Gemma 4 special tokens with their real ids (spec §6.1).
const GEMMA_IDS: [(&str, u32); 17] = [
    ("<pad>", 0),
    ("<eos>", 1),
    ("<bos>", 2),
    ("<unk>", 3),
    ("<mask>", 4),
    ("<|tool>", 46),
    ("<tool|>", 47),
    ("<|tool_call>", 48),
    ("<tool_call|>", 49),
    ("<|tool_response>", 50),
    ("<tool_response|>", 51),
    ("<|\"|>", 52),
    ("<|think|>", 98),
    ("<|channel>", 100),
    ("<channel|>", 101),
    ("<|turn>", 105),
    ("<turn|>", 106),
];
/// Gemma's newline token id (an ordinary vocabulary entry, not an added token).
const NEWLINE_ID: u32 = 107;
/// Special tokens whose Gemma ids (255999…258884) exceed the tiny vocabulary: next free ids.
const MEDIA_TOKENS: [&str; 7] =
    ["<|image>", "<image|>", "<|audio>", "<audio|>", "<|image|>", "<|audio|>", "<|video|>"];

/// The tiny vocabulary, indexed by id: `(token, is_special)`.
fn tiny_vocab() -> Vec<(String, bool)> {
    let mut fixed: Vec<(String, u32, bool)> =
        GEMMA_IDS.iter().map(|&(t, id)| (t.to_string(), id, true)).collect();
    fixed.push(("\n".into(), NEWLINE_ID, false));
    let mut rest: Vec<(String, bool)> =
        MEDIA_TOKENS.iter().map(|t| (t.to_string(), true)).collect();
    rest.push(("\t".into(), false));
    rest.extend((b' '..=b'~').map(|b| ((b as char).to_string(), false)));
    rest.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), false)));

    let size = fixed.len() + rest.len();
    let mut vocab: Vec<Option<(String, bool)>> = vec![None; size];
    for (t, id, special) in fixed {
        vocab[id as usize] = Some((t, special));
    }
    let mut rest = rest.into_iter();
    for slot in vocab.iter_mut().filter(|s| s.is_none()) {
        *slot = rest.next();
    }
    vocab.into_iter().flatten().collect()
}

/// The tiny tokenizer as `tokenizer.json` text (write it next to a tiny model).
pub fn tiny_tokenizer_json() -> String {
    let vocab = tiny_vocab();
    let model_vocab: serde_json::Map<String, Value> =
        vocab.iter().enumerate().map(|(id, (t, _))| (t.clone(), json!(id))).collect();
    let added: Vec<Value> = vocab
        .iter()
        .enumerate()
        .filter(|(_, (_, special))| *special)
        .map(|(id, (t, _))| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let bos = json!({"SpecialToken": {"id": "<bos>", "type_id": 0}});
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}
        },
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": model_vocab, "merges": []
        }
    });
    // A json! value always serialises.
    serde_json::to_string_pretty(&tokenizer).unwrap_or_default()
}

/// The tiny tokenizer, loaded.
pub fn tiny_tokenizer() -> Tokenizer {
    match Tokenizer::from_json_str(&tiny_tokenizer_json(), "tiny") {
        Ok(t) => t,
        Err(e) => unreachable!("the tiny tokenizer is built by this crate and tested: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_small_and_keeps_gemma_ids_for_turn_and_stop_tokens() {
        let tok = tiny_tokenizer();
        assert_eq!(
            tok.vocab_size(),
            377,
            "17 Gemma-id specials, newline, 7 media, tab, 95 printable ASCII, 256 bytes"
        );
        for (t, id) in GEMMA_IDS {
            assert_eq!(tok.token_to_id(t), Some(id), "{t}");
        }
        assert_eq!(tok.token_to_id("\n"), Some(NEWLINE_ID));
        for t in MEDIA_TOKENS {
            assert!(tok.token_to_id(t).is_some(), "{t}");
        }
    }

    #[test]
    fn every_special_token_encodes_to_one_id_and_text_round_trips() {
        let tok = tiny_tokenizer();
        let text = "<|turn>user\nReverse: abc<turn|>\n<|turn>model\n<|channel>thought\n<channel|>cba — ✓ é<turn|>";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&enc.ids).unwrap(), text);
        assert_eq!(tok.encode("<|\"|>", false).unwrap().ids, [52]);
        assert_eq!(tok.encode("<|tool_call>", false).unwrap().ids, [48]);
    }

    #[test]
    fn non_ascii_falls_back_to_bytes_not_unk() {
        let tok = tiny_tokenizer();
        let ids = tok.encode("é", false).unwrap().ids;
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&3));
    }
}
