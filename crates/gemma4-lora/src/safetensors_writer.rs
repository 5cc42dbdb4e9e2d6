//! A streaming safetensors writer: the header is computed up front from names, dtypes and
//! shapes, then each tensor's bytes are written in order, in as many pieces as the caller likes.
//! Peak memory is whatever the caller holds for one piece — never a whole file, as
//! `safetensors::serialize` needs.
//!
//! The header is the `safetensors` crate's own (`tensor::Metadata`, `__metadata__` first, padded
//! with spaces to 8 bytes), so files read back exactly like ones Python's `save_file` writes.
//! Also here: the f32 ⇄ f16/bf16/f32 codec used to merge and convert tensors.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::error::{LoraError, Result};

/// One tensor of a file to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Size of the data in bytes.
    pub len: usize,
}

/// Writes one safetensors file tensor by tensor, in the order of the specs given to `create`.
pub struct StreamingWriter {
    path: PathBuf,
    file: BufWriter<File>,
    specs: Vec<TensorSpec>,
    /// Index of the tensor being written, and bytes of it written so far.
    current: usize,
    written: usize,
}

impl StreamingWriter {
    /// Create `path` and write its header; `metadata` goes to `__metadata__` (HF: `format: pt`).
    pub fn create(path: &Path, specs: Vec<TensorSpec>, metadata: &[(&str, &str)]) -> Result<Self> {
        let header = header_bytes(path, &specs, metadata)?;
        let io_err = |source| LoraError::Io { path: path.to_owned(), source };
        let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_err)?);
        file.write_all(&(header.len() as u64).to_le_bytes()).map_err(io_err)?;
        file.write_all(&header).map_err(io_err)?;
        Ok(Self { path: path.to_owned(), file, specs, current: 0, written: 0 })
    }

    /// Append `bytes` to tensor `name`, which must be the next one not yet complete.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(spec) = self.specs.get(self.current) else {
            return Err(self.error(format!("tensor {name}: every tensor of the header is already written")));
        };
        if spec.name != name {
            return Err(self.error(format!("tensor {name}: expected data of {} next", spec.name)));
        }
        if self.written + bytes.len() > spec.len {
            return Err(self.error(format!("tensor {name}: {} bytes written, the header says {}", self.written + bytes.len(), spec.len)));
        }
        self.file.write_all(bytes).map_err(|source| LoraError::Io { path: self.path.clone(), source })?;
        self.written += bytes.len();
        if self.written == spec.len {
            self.current += 1;
            self.written = 0;
            // Zero-sized tensors that follow are complete already.
            while self.specs.get(self.current).is_some_and(|s| s.len == 0) {
                self.current += 1;
            }
        }
        Ok(())
    }

    /// Check that every tensor is complete, flush and sync the file.
    pub fn finish(mut self) -> Result<()> {
        while self.specs.get(self.current).is_some_and(|s| s.len == 0) {
            self.current += 1;
        }
        if let Some(spec) = self.specs.get(self.current) {
            let reason = format!("tensor {}: only {} of {} bytes written", spec.name, self.written, spec.len);
            return Err(self.error(reason));
        }
        let io_err = |source| LoraError::Io { path: self.path.clone(), source };
        self.file.flush().map_err(io_err)?;
        self.file.get_ref().sync_all().map_err(io_err)
    }

    fn error(&self, reason: String) -> LoraError {
        LoraError::Adapter { path: self.path.clone(), reason }
    }
}

/// The header JSON, offsets in spec order, padded with spaces to a multiple of 8 bytes.
fn header_bytes(path: &Path, specs: &[TensorSpec], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut offset = 0;
    let mut infos = Vec::with_capacity(specs.len());
    for s in specs {
        infos.push((s.name.clone(), TensorInfo { dtype: s.dtype, shape: s.shape.clone(), data_offsets: (offset, offset + s.len) }));
        offset += s.len;
    }
    let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let err = |reason: String| LoraError::Adapter { path: path.to_owned(), reason };
    // `Metadata::new` validates that each tensor's byte length matches its dtype and shape.
    let header = Metadata::new(Some(meta), infos).map_err(|e| err(format!("invalid header: {e}")))?;
    let mut bytes = serde_json::to_string(&header).map_err(|e| err(format!("invalid header: {e}")))?.into_bytes();
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok(bytes)
}

/// Bytes per element of the dtypes we decode and encode (f32, f16, bf16); `None` otherwise.
pub fn float_width(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// Decode little-endian f32/f16/bf16 bytes to f32 (`None` for any other dtype).
pub fn decode(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => return None,
    })
}

/// Encode f32 values as little-endian f32/f16/bf16, rounding to nearest even as torch's
/// `.to(dtype)` does (`None` for any other dtype).
pub fn encode(dtype: Dtype, values: &[f32]) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    fn spec(name: &str, dtype: Dtype, shape: &[usize]) -> TensorSpec {
        let len = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        TensorSpec { name: name.into(), dtype, shape: shape.to_vec(), len }
    }

    #[test]
    fn streamed_file_reads_back_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let specs = vec![spec("b", Dtype::F32, &[2, 3]), spec("empty", Dtype::BF16, &[0]), spec("a", Dtype::BF16, &[3])];
        let mut w = StreamingWriter::create(&path, specs, &[("format", "pt")]).unwrap();
        let b: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let bytes = encode(Dtype::F32, &b).unwrap();
        w.write("b", &bytes[..8]).unwrap(); // in two pieces
        w.write("b", &bytes[8..]).unwrap();
        w.write("a", &encode(Dtype::BF16, &[1.0, -2.0, 3.5]).unwrap()).unwrap();
        w.finish().unwrap();
        let file = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(file[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
        let (_, meta) = SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let st = SafeTensors::deserialize(&file).unwrap();
        assert_eq!(decode(Dtype::F32, st.tensor("b").unwrap().data()).unwrap(), b);
        assert_eq!(decode(Dtype::BF16, st.tensor("a").unwrap().data()).unwrap(), vec![1.0, -2.0, 3.5]);
        assert_eq!(st.tensor("empty").unwrap().shape(), &[0]);
    }

    #[test]
    fn out_of_order_oversized_or_missing_data_is_an_error_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let specs = vec![spec("first", Dtype::F32, &[1]), spec("second", Dtype::F32, &[1])];
        let mut w = StreamingWriter::create(&path, specs.clone(), &[]).unwrap();
        assert!(w.write("second", &[0; 4]).unwrap_err().to_string().contains("expected data of first"));
        assert!(w.write("first", &[0; 8]).unwrap_err().to_string().contains("tensor first: 8 bytes"));
        w.write("first", &[0; 4]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("tensor second: only 0 of 4"));
        let bad = vec![TensorSpec { len: 3, ..specs[0].clone() }];
        assert!(StreamingWriter::create(&path, bad, &[]).is_err());
    }

    #[test]
    fn bf16_and_f16_encoding_rounds_to_nearest_even() {
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even mantissa (1.0).
        let x = 1.0 + 2f32.powi(-8);
        assert_eq!(decode(Dtype::BF16, &encode(Dtype::BF16, &[x]).unwrap()).unwrap(), vec![1.0]);
        assert_eq!(decode(Dtype::F16, &encode(Dtype::F16, &[x]).unwrap()).unwrap(), vec![x]);
        assert!(encode(Dtype::I64, &[1.0]).is_none());
    }
}
