//! The GGUF v2/v3 header as stored: magic and version, metadata key/values ([`MetaValue`]),
//! and the tensor table with each tensor's absolute, aligned byte range in the file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ModelError, Result};
use crate::formats::quant::GgmlType;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        if let Self::Int(i) = self { u64::try_from(*i).ok() } else { None }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        if let Self::Str(s) = self { Some(s) } else { None }
    }
}

/// A tensor in the GGUF data section.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    /// llama.cpp name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Row-major (HF) shape: GGUF lists dims fastest-first, we reverse them.
    pub shape: Vec<usize>,
    pub ggml_type: std::result::Result<GgmlType, String>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A parsed GGUF header (the data stays in the caller's mapping).
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<GgufTensor>,
}

impl GgufHeader {
    /// Parse the header, metadata and tensor table of a GGUF file held in `bytes` (read from
    /// `path`, named in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        parse(bytes, path)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> ModelError {
        ModelError::Gguf {
            path: self.path.to_owned(),
            reason: format!("{what} (at byte {})", self.pos),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.pos..self.pos.checked_add(n).ok_or_else(|| self.err("length overflow"))?)
            .ok_or_else(|| self.err("truncated file"))?;
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue> {
        let int = |b: &[u8], signed: bool| -> i128 {
            let mut v = [0u8; 16];
            v[..b.len()].copy_from_slice(b);
            if signed && b[b.len() - 1] & 0x80 != 0 {
                v[b.len()..].fill(0xFF);
            }
            i128::from_le_bytes(v)
        };
        Ok(match ty {
            0 | 1 => MetaValue::Int(int(self.take(1)?, ty == 1)),
            2 | 3 => MetaValue::Int(int(self.take(2)?, ty == 3)),
            4 | 5 => MetaValue::Int(int(self.take(4)?, ty == 5)),
            10 | 11 => MetaValue::Int(int(self.take(8)?, ty == 11)),
            6 => MetaValue::Float(f32::from_le_bytes(self.take(4)?.try_into().unwrap()) as f64),
            12 => MetaValue::Float(f64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            7 => MetaValue::Bool(self.take(1)?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 if depth < 4 => {
                let (ety, n) = (self.u32()?, self.u64()? as usize);
                // Each item takes at least a byte: no capacity past what the file holds.
                let mut items = Vec::with_capacity(n.min(self.b.len().saturating_sub(self.pos)));
                for _ in 0..n {
                    items.push(self.value(ety, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            other => return Err(self.err(&format!("unknown metadata value type {other}"))),
        })
    }
}

/// Parse the header, metadata and tensor table of a GGUF file held in `bytes`.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<GgufHeader> {
    let mut c = Cursor { b: bytes, pos: 0, path };
    if c.take(4)? != b"GGUF" {
        return Err(c.err("not a GGUF file (bad magic)"));
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(c.err(&format!("unsupported version {version} (expected 2 or 3)")));
    }
    let (n_tensors, n_kv) = (c.u64()?, c.u64()?);
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        metadata.insert(key, c.value(ty, 0)?);
    }
    let mut raw = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()? as usize;
        if n_dims > 8 {
            return Err(c.err(&format!("tensor {name}: {n_dims} dims")));
        }
        let dims = (0..n_dims).map(|_| c.u64().map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
        let (ty, offset) = (c.u32()?, c.u64()? as usize);
        raw.push((name, dims, ty, offset));
    }
    let align =
        metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32) as usize;
    if align == 0 || !align.is_power_of_two() {
        return Err(c.err(&format!("general.alignment {align} is not a power of two")));
    }
    let data = c.pos.div_ceil(align) * align;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ty, offset) in raw {
        let ggml_type = GgmlType::from_id(ty);
        // Sizes from the file are multiplied with overflow checks (issue 16: a product that
        // wrapped to 0 elements passed every check below, then aborted), in any order (zeros
        // left out: `[0, 2^40, 2^40]` would overflow whoever multiplies the other way round).
        let n = crate::checkpoint::elements(&dims).ok_or_else(|| {
            c.err(&format!(
                "tensor {name}: dimensions {dims:?} overflow (no file holds that many elements)"
            ))
        })?;
        let len = match &ggml_type {
            Ok(t) => t.bytes_for(n).ok_or_else(|| {
                c.err(&format!(
                    "tensor {name}: {n} elements is not a whole number of {t:?} blocks, or too many"
                ))
            })?,
            Err(_) => 0,
        };
        let range = data.checked_add(offset).and_then(|s| Some((s, s.checked_add(len)?)));
        let Some((start, end)) =
            range.filter(|&(_, end)| end <= bytes.len() && offset % align == 0)
        else {
            return Err(c.err(&format!(
                "tensor {name}: data at offset {offset} ({len} bytes) is outside the file or misaligned"
            )));
        };
        let shape = dims.into_iter().rev().collect();
        tensors.push(GgufTensor { name, shape, ggml_type, start, end });
    }
    Ok(GgufHeader { version, metadata, tensors })
}
