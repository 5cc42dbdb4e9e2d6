//! The tokenizer in the metadata: `tokenizer.*` keys, typed as llama.cpp's loader reads them
//! (`src/llama-arch.cpp` `LLM_KV_TOKENIZER_*`, `src/llama-vocab.cpp`). A GGUF base gives its own
//! keys (vocab, scores, token types, merges, special ids, flags, chat template), copied; a base
//! without a tokenizer gets `tokenizer.ggml.model = "none"` and `{arch}.vocab_size`, which
//! llama.cpp runs on token ids.

use super::GgufValue;
use crate::error::{ModelError, Result};
use crate::formats::gguf::{GgufHeader, MetaValue};

/// Where the tokenizer comes from.
#[derive(Clone, Copy, Debug)]
pub enum VocabSource<'a> {
    /// The `tokenizer.*` keys of the GGUF base, copied.
    Gguf(&'a GgufHeader),
    /// No tokenizer: llama.cpp gets ids only.
    None,
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    U32,
    Bool,
    ArrStr,
    ArrF32,
    ArrI32,
}

/// Every `tokenizer.*` key we copy, with the type llama.cpp expects. Others are refused.
const KEYS: &[(&str, Kind)] = &[
    ("tokenizer.ggml.model", Kind::Str),
    ("tokenizer.ggml.pre", Kind::Str),
    ("tokenizer.ggml.tokens", Kind::ArrStr),
    ("tokenizer.ggml.token_type", Kind::ArrI32),
    ("tokenizer.ggml.token_type_count", Kind::U32),
    ("tokenizer.ggml.scores", Kind::ArrF32),
    ("tokenizer.ggml.merges", Kind::ArrStr),
    ("tokenizer.ggml.bos_token_id", Kind::U32),
    ("tokenizer.ggml.eos_token_id", Kind::U32),
    ("tokenizer.ggml.eot_token_id", Kind::U32),
    ("tokenizer.ggml.eom_token_id", Kind::U32),
    ("tokenizer.ggml.unknown_token_id", Kind::U32),
    ("tokenizer.ggml.seperator_token_id", Kind::U32),
    ("tokenizer.ggml.padding_token_id", Kind::U32),
    ("tokenizer.ggml.cls_token_id", Kind::U32),
    ("tokenizer.ggml.mask_token_id", Kind::U32),
    ("tokenizer.ggml.add_bos_token", Kind::Bool),
    ("tokenizer.ggml.add_eos_token", Kind::Bool),
    ("tokenizer.ggml.add_sep_token", Kind::Bool),
    ("tokenizer.ggml.add_space_prefix", Kind::Bool),
    ("tokenizer.ggml.remove_extra_whitespaces", Kind::Bool),
    ("tokenizer.chat_template", Kind::Str),
];

/// The tokenizer keys of the export (`arch` names `{arch}.vocab_size` when there is none).
pub fn vocab_metadata(
    source: VocabSource,
    arch: &str,
    vocab_size: usize,
) -> Result<Vec<(String, GgufValue)>> {
    let VocabSource::Gguf(header) = source else {
        return Ok(vec![
            ("tokenizer.ggml.model".into(), GgufValue::Str("none".into())),
            (format!("{arch}.vocab_size"), GgufValue::U32(u32_of(vocab_size, "vocab_size")?)),
        ]);
    };
    let mut out = Vec::new();
    for (key, value) in header.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
        let bad = |why: &str| ModelError::Unsupported {
            key: key.clone(),
            value: why.into(),
            hint: Some("GGUF export copies the tokenizer keys llama.cpp reads".into()),
        };
        let &(_, kind) = KEYS.iter().find(|(k, _)| k == key).ok_or_else(|| bad("unknown key"))?;
        out.push((key.clone(), typed(value, kind).ok_or_else(|| bad("unexpected value type"))?));
    }
    if !out.iter().any(|(k, _)| k == "tokenizer.ggml.tokens") {
        return Err(ModelError::Input(
            "the GGUF base has no tokenizer.ggml.tokens: nothing for llama.cpp to tokenize with"
                .into(),
        ));
    }
    Ok(out)
}

/// The tokenizer keys of the GGUF file `path` (memory-mapped: only its header is read).
pub fn vocab_of_gguf(path: &std::path::Path, arch: &str) -> Result<Vec<(String, GgufValue)>> {
    let map = crate::checkpoint::map_file(path)?;
    let header = GgufHeader::parse(&map, path)?;
    vocab_metadata(VocabSource::Gguf(&header), arch, 0)
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| ModelError::invalid(what.to_owned(), format!("{v} > u32")))
}

fn typed(v: &MetaValue, kind: Kind) -> Option<GgufValue> {
    let items = |v: &MetaValue| match v {
        MetaValue::Array(a) => Some(a.clone()),
        _ => None,
    };
    Some(match kind {
        Kind::Str => GgufValue::Str(v.as_str()?.to_owned()),
        Kind::U32 => GgufValue::U32(u32::try_from(v.as_u64()?).ok()?),
        Kind::Bool => match v {
            MetaValue::Bool(b) => GgufValue::Bool(*b),
            _ => return None,
        },
        Kind::ArrStr => GgufValue::ArrStr(
            items(v)?.iter().map(|x| x.as_str().map(str::to_owned)).collect::<Option<_>>()?,
        ),
        Kind::ArrF32 => GgufValue::ArrF32(
            items(v)?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect::<Option<_>>()?,
        ),
        Kind::ArrI32 => GgufValue::ArrI32(
            items(v)?
                .iter()
                .map(|x| match x {
                    MetaValue::Int(i) => i32::try_from(*i).ok(),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
    })
}
