//! GGUF out: what llama.cpp reads, planned from a resolved config and a checkpoint's HF names.
//! The reader's mirror (`super::gguf`): llama.cpp's architecture names, metadata keys and tensor
//! names (read from llama.cpp's `src/llama-arch.cpp`, `src/models/gemma{3,4}.cpp` and
//! `conversion/gemma.py`, as vendored by llama-cpp-python 0.3.36), typed metadata values, the
//! header bytes, and the block formats we quantise to.
//!
//! Nothing here writes a file: [`plan`] decides every key and tensor (and refuses what
//! llama.cpp cannot represent) before a byte is written; the caller streams the tensors through
//! `gemma4-store`. `names.rs` holds the HF ↔ llama.cpp tensor names, `arch.rs` the metadata
//! and per-tensor edits of each architecture, `vocab.rs` the tokenizer keys of a GGUF base
//! (copied), `hf_vocab.rs` those of a Hugging Face `tokenizer.json` (converted), `quantize.rs`
//! the block encoders (each checked back through [`crate::dequantize`]).

use crate::formats::quant::GgmlType;

mod arch;
mod hf_vocab;
mod hparams;
mod kquants;
mod names;
mod quantize;
mod vocab;

pub use arch::{Edit, ExportTensor, GgufPlan, architecture, plan};
pub use hf_vocab::vocab_of_tokenizer_json;
pub use names::{LLAMA_NAMES, llama_name};
pub use quantize::{ExportQuant, Role, more_bits, quantize, quantize_checked};
pub use vocab::{VocabSource, vocab_metadata, vocab_of_gguf};

/// GGUF's default data alignment (`general.alignment` unset).
pub const ALIGNMENT: usize = 32;

/// One typed metadata value, as llama.cpp's loader expects it (it checks each key's type).
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    ArrI32(Vec<i32>),
    ArrU32(Vec<u32>),
    ArrF32(Vec<f32>),
    ArrBool(Vec<bool>),
    ArrStr(Vec<String>),
}

impl GgufValue {
    fn type_id(&self) -> u32 {
        match self {
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::Str(_) => 8,
            _ => 9,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let arr = |out: &mut Vec<u8>, ty: u32, n: usize| {
            out.extend(ty.to_le_bytes());
            out.extend((n as u64).to_le_bytes());
        };
        match self {
            Self::U32(v) => out.extend(v.to_le_bytes()),
            Self::I32(v) => out.extend(v.to_le_bytes()),
            Self::F32(v) => out.extend(v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::Str(s) => put_str(out, s),
            Self::ArrI32(v) => {
                arr(out, 5, v.len());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Self::ArrU32(v) => {
                arr(out, 4, v.len());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Self::ArrF32(v) => {
                arr(out, 6, v.len());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Self::ArrBool(v) => {
                arr(out, 7, v.len());
                out.extend(v.iter().map(|&b| u8::from(b)));
            }
            Self::ArrStr(v) => {
                arr(out, 8, v.len());
                v.iter().for_each(|s| put_str(out, s));
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgmlType {
    /// The GGUF `ggml_type` id (the inverse of [`GgmlType::from_id`]).
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }
}

/// A tensor's entry in the header: llama.cpp name, HF (row-major) shape, type.
#[derive(Clone, Debug)]
pub struct HeaderTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub ty: GgmlType,
}

/// The bytes of a GGUF v3 header (magic, counts, metadata, tensor table, padding to the data
/// section) and each tensor's data length; tensor `k` starts at the header's end plus the sum
/// of the earlier lengths, each padded to [`ALIGNMENT`]. `None` if a tensor is not a whole
/// number of blocks of its type.
pub fn header_bytes(
    metadata: &[(String, GgufValue)],
    tensors: &[HeaderTensor],
) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend(value.type_id().to_le_bytes());
        value.encode(&mut out);
    }
    let (mut offset, mut lens) = (0usize, Vec::with_capacity(tensors.len()));
    for t in tensors {
        put_str(&mut out, t.name);
        out.extend((t.shape.len() as u32).to_le_bytes());
        // GGUF lists dims fastest-first: the reverse of the HF (row-major) shape.
        t.shape.iter().rev().for_each(|&d| out.extend((d as u64).to_le_bytes()));
        out.extend(t.ty.id().to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        let len = t.ty.bytes_for(t.shape.iter().product())?;
        lens.push(len);
        offset += len.div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    out.resize(out.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
    Some((out, lens))
}

/// Zero bytes after a tensor of `len` bytes, up to the next [`ALIGNMENT`] boundary.
pub fn padding(len: usize) -> usize {
    len.div_ceil(ALIGNMENT) * ALIGNMENT - len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::{MetaValue, parse};

    #[test]
    fn our_header_reads_back_through_our_reader() {
        let meta = vec![
            ("general.architecture".to_owned(), GgufValue::Str("gemma3".into())),
            ("gemma3.block_count".to_owned(), GgufValue::U32(2)),
            ("gemma3.attention.sliding_window_pattern".to_owned(), GgufValue::ArrBool(vec![true])),
            ("s".to_owned(), GgufValue::ArrStr(vec!["a".into(), "bc".into()])),
        ];
        let shape = [3usize, 32];
        let tensors = [
            HeaderTensor { name: "a.weight", shape: &shape, ty: GgmlType::Q8_0 },
            HeaderTensor { name: "b.weight", shape: &shape, ty: GgmlType::F32 },
        ];
        let (mut bytes, lens) = header_bytes(&meta, &tensors).unwrap();
        assert_eq!(lens, vec![3 * 34, 3 * 32 * 4]);
        for len in lens {
            bytes.extend(vec![0u8; len + padding(len)]);
        }
        let h = parse(&bytes, std::path::Path::new("t.gguf")).unwrap();
        assert_eq!(h.metadata["gemma3.block_count"], MetaValue::Int(2));
        assert_eq!(
            h.metadata["s"],
            MetaValue::Array(vec![MetaValue::Str("a".into()), MetaValue::Str("bc".into())])
        );
        assert_eq!(h.tensors[1].shape, vec![3, 32]);
        assert_eq!(h.tensors[1].start - h.tensors[0].start, (3 * 34usize).div_ceil(32) * 32);
        assert_eq!(h.tensors[1].end, bytes.len());
    }
}
