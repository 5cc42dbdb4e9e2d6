//! Safetensors files out: [`write_f32`], the one writer of f32 tensors (adapters, optimizer
//! moments, logits, the tiny model), and [`StreamingWriter`], which writes a file tensor by
//! tensor, in as many pieces as the caller likes, so fusing a checkpoint never holds a whole
//! file in memory as `safetensors::serialize` needs. Both write through an [`AtomicFile`]: the
//! file is complete or absent.
//!
//! The header is the `safetensors` crate's own (`tensor::Metadata`, `__metadata__` first, padded
//! with spaces to 8 bytes), so files read back exactly like ones Python's `save_file` writes;
//! [`write_f32`] orders tensors by name as `safetensors::serialize` does, so its files are
//! byte-identical to that function's. Also here: the f32 ⇄ f16/bf16/f32 codec used to merge and
//! convert tensors.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use crate::atomic::AtomicFile;
use crate::error::{Result, StoreError};

/// Values encoded per piece by [`write_f32`] (bounds its extra memory).
const F32_CHUNK: usize = 1 << 16;

/// A named f32 tensor to write: row-major values and their shape.
#[derive(Clone, Copy, Debug)]
pub struct F32Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub values: &'a [f32],
}

/// Write f32 tensors to `path` (complete or absent); `metadata` goes to `__metadata__` (none
/// if empty). A shape that does not match its values, or a name given twice, is an error.
pub fn write_f32(path: &Path, tensors: &[F32Tensor], metadata: &[(&str, &str)]) -> Result<()> {
    let mut order: Vec<&F32Tensor> = tensors.iter().collect();
    order.sort_by_key(|t| t.name);
    if let Some(pair) = order.windows(2).find(|p| p[0].name == p[1].name) {
        let reason = format!("tensor {} is given twice", pair[0].name);
        return Err(StoreError::Safetensors { path: path.to_owned(), reason });
    }
    let specs = order
        .iter()
        .map(|t| TensorSpec {
            name: t.name.to_owned(),
            dtype: Dtype::F32,
            shape: t.shape.to_vec(),
            len: t.values.len() * 4,
        })
        .collect();
    let mut writer = StreamingWriter::create(path, specs, metadata)?;
    for t in order {
        for chunk in t.values.chunks(F32_CHUNK) {
            writer.write(t.name, &encode_f32(chunk))?;
        }
    }
    writer.finish()
}

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
/// Dropped before [`finish`](Self::finish), it leaves nothing at its path.
pub struct StreamingWriter {
    file: AtomicFile,
    specs: Vec<TensorSpec>,
    /// Index of the tensor being written, and bytes of it written so far.
    current: usize,
    written: usize,
}

impl StreamingWriter {
    /// Start `path` and write its header; `metadata` goes to `__metadata__` (HF: `format: pt`;
    /// none if empty).
    pub fn create(path: &Path, specs: Vec<TensorSpec>, metadata: &[(&str, &str)]) -> Result<Self> {
        let header = header_bytes(path, &specs, metadata)?;
        let mut file = AtomicFile::create(path)?;
        let len = (header.len() as u64).to_le_bytes();
        file.write_all(&len)
            .and_then(|()| file.write_all(&header))
            .map_err(StoreError::io(path))?;
        Ok(Self { file, specs, current: 0, written: 0 })
    }

    /// Append `bytes` to tensor `name`, which must be the next one not yet complete.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let Some(spec) = self.specs.get(self.current) else {
            return Err(
                self.error(format!("tensor {name}: every tensor of the header is already written"))
            );
        };
        if spec.name != name {
            return Err(self.error(format!("tensor {name}: expected data of {} next", spec.name)));
        }
        let total = self.written + bytes.len();
        if total > spec.len {
            return Err(self.error(format!(
                "tensor {name}: {total} bytes written, the header says {}",
                spec.len
            )));
        }
        self.file.write_all(bytes).map_err(StoreError::io(self.file.path()))?;
        self.written += bytes.len();
        if self.written == spec.len {
            self.current += 1;
            self.written = 0;
            self.skip_empty();
        }
        Ok(())
    }

    /// Check that every tensor is complete, then put the file in place (flushed and synced).
    pub fn finish(mut self) -> Result<()> {
        self.skip_empty();
        if let Some(spec) = self.specs.get(self.current) {
            let reason = format!(
                "tensor {}: only {} of {} bytes written",
                spec.name, self.written, spec.len
            );
            return Err(self.error(reason));
        }
        self.file.commit()
    }

    /// Zero-sized tensors at the current position are complete already.
    fn skip_empty(&mut self) {
        while self.specs.get(self.current).is_some_and(|s| s.len == 0) {
            self.current += 1;
        }
    }

    fn error(&self, reason: String) -> StoreError {
        StoreError::Safetensors { path: self.file.path().to_owned(), reason }
    }
}

/// The header JSON, offsets in spec order, padded with spaces to a multiple of 8 bytes.
fn header_bytes(path: &Path, specs: &[TensorSpec], metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut offset = 0;
    let mut infos = Vec::with_capacity(specs.len());
    for s in specs {
        let data_offsets = (offset, offset + s.len);
        infos.push((
            s.name.clone(),
            TensorInfo { dtype: s.dtype, shape: s.shape.clone(), data_offsets },
        ));
        offset += s.len;
    }
    let meta: HashMap<String, String> =
        metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let err = |e: String| StoreError::Safetensors {
        path: path.to_owned(),
        reason: format!("invalid header: {e}"),
    };
    // `Metadata::new` validates that each tensor's byte length matches its dtype and shape.
    let header =
        Metadata::new((!meta.is_empty()).then_some(meta), infos).map_err(|e| err(e.to_string()))?;
    let mut bytes = serde_json::to_string(&header).map_err(|e| err(e.to_string()))?.into_bytes();
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
        Dtype::F32 => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Dtype::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Encode f32 values as little-endian f32/f16/bf16, rounding to nearest even as torch's
/// `.to(dtype)` does (`None` for any other dtype).
pub fn encode(dtype: Dtype, values: &[f32]) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F32 => encode_f32(values),
        Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        _ => return None,
    })
}

fn encode_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;

    fn spec(name: &str, dtype: Dtype, shape: &[usize]) -> TensorSpec {
        let len = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        TensorSpec { name: name.into(), dtype, shape: shape.to_vec(), len }
    }

    #[test]
    fn streamed_file_reads_back_with_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let specs = vec![
            spec("b", Dtype::F32, &[2, 3]),
            spec("empty", Dtype::BF16, &[0]),
            spec("a", Dtype::BF16, &[3]),
        ];
        let mut w = StreamingWriter::create(&path, specs, &[("format", "pt")]).unwrap();
        let b: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let bytes = encode(Dtype::F32, &b).unwrap();
        w.write("b", &bytes[..8]).unwrap(); // in two pieces
        w.write("b", &bytes[8..]).unwrap();
        w.write("a", &encode(Dtype::BF16, &[1.0, -2.0, 3.5]).unwrap()).unwrap();
        assert!(!path.exists(), "nothing at the path before finish");
        w.finish().unwrap();
        let file = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(file[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
        let (_, meta) = SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let st = SafeTensors::deserialize(&file).unwrap();
        assert_eq!(decode(Dtype::F32, st.tensor("b").unwrap().data()).unwrap(), b);
        assert_eq!(
            decode(Dtype::BF16, st.tensor("a").unwrap().data()).unwrap(),
            vec![1.0, -2.0, 3.5]
        );
        assert_eq!(st.tensor("empty").unwrap().shape(), &[0]);
    }

    #[test]
    fn out_of_order_oversized_or_missing_data_is_an_error_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let specs = vec![spec("first", Dtype::F32, &[1]), spec("second", Dtype::F32, &[1])];
        let mut w = StreamingWriter::create(&path, specs.clone(), &[]).unwrap();
        assert!(
            w.write("second", &[0; 4]).unwrap_err().to_string().contains("expected data of first")
        );
        assert!(
            w.write("first", &[0; 8]).unwrap_err().to_string().contains("tensor first: 8 bytes")
        );
        w.write("first", &[0; 4]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("tensor second: only 0 of 4"));
        let bad = vec![TensorSpec { len: 3, ..specs[0].clone() }];
        assert!(StreamingWriter::create(&path, bad, &[]).is_err());
        // A writer that failed or was dropped leaves neither the file nor a temporary.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bf16_and_f16_encoding_rounds_to_nearest_even() {
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even mantissa (1.0).
        let x = 1.0 + 2f32.powi(-8);
        assert_eq!(decode(Dtype::BF16, &encode(Dtype::BF16, &[x]).unwrap()).unwrap(), vec![1.0]);
        assert_eq!(decode(Dtype::F16, &encode(Dtype::F16, &[x]).unwrap()).unwrap(), vec![x]);
        assert!(encode(Dtype::I64, &[1.0]).is_none());
    }

    #[test]
    fn f32_files_are_byte_identical_to_safetensors_serialize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adapter_model.safetensors");
        let (a, b): (Vec<f32>, Vec<f32>) =
            ((0..6).map(|i| i as f32).collect(), vec![-1.5; 200_000]);
        let tensors = [
            F32Tensor { name: "z.lora_B.weight", shape: &[2, 3], values: &a },
            F32Tensor { name: "a.lora_A.weight", shape: &[1000, 200], values: &b },
        ];
        write_f32(&path, &tensors, &[("format", "pt")]).unwrap();
        let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| encode_f32(t.values)).collect();
        let views: HashMap<String, TensorView> = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                (t.name.to_owned(), TensorView::new(Dtype::F32, t.shape.to_vec(), b).unwrap())
            })
            .collect();
        let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        assert_eq!(std::fs::read(&path).unwrap(), safetensors::serialize(views, meta).unwrap());
        // Without metadata, as `serialize(.., None)`: no `__metadata__` at all.
        write_f32(&path, &tensors[..1], &[]).unwrap();
        let view = TensorView::new(Dtype::F32, vec![2, 3], &bytes[0]).unwrap();
        let want = safetensors::serialize([("z.lora_B.weight", view)], None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn a_wrong_shape_or_a_repeated_name_is_an_error_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.safetensors");
        std::fs::write(&path, "old").unwrap();
        let v = [1.0, 2.0, 3.0];
        let wrong = [F32Tensor { name: "t", shape: &[2, 2], values: &v }];
        let e = write_f32(&path, &wrong, &[]).unwrap_err().to_string();
        assert!(e.contains("o.safetensors") && e.contains("invalid header"), "{e}");
        let twice = [F32Tensor { name: "t", shape: &[3], values: &v }; 2];
        let e = write_f32(&path, &twice, &[]).unwrap_err().to_string();
        assert!(e.contains("tensor t is given twice"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
