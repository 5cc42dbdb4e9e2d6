//! Small file helpers: read token ids from safetensors, write safetensors atomically.

use std::path::Path;

use anyhow::{Result, bail};
use gemma4_store::F32Tensor;
use safetensors::{Dtype, SafeTensors};

/// An integer tensor read from a safetensors file, as i64, with its shape.
pub struct IntTensor {
    pub values: Vec<i64>,
    pub shape: Vec<usize>,
}

/// Read the integer tensor `name` (i64 or i32) from `st`.
pub fn read_int(st: &SafeTensors, path: &Path, name: &str) -> Result<Option<IntTensor>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let bytes = view.data();
    let values: Vec<i64> = match view.dtype() {
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64)
            .collect(),
        other => {
            bail!("{}: tensor `{name}` has dtype {other:?}, expected I64 or I32", path.display())
        }
    };
    Ok(Some(IntTensor { values, shape: view.shape().to_vec() }))
}

/// Read the f32 tensor `name` from `st`, if present.
pub fn read_f32(
    st: &SafeTensors,
    path: &Path,
    name: &str,
) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    if view.dtype() != Dtype::F32 {
        bail!("{}: tensor `{name}` has dtype {:?}, expected F32", path.display(), view.dtype());
    }
    let v =
        view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Some((v, view.shape().to_vec())))
}

/// Write f32 tensors to `path` through gemma4-store's writer: the file is complete or absent.
pub fn write_f32_atomic(path: &Path, tensors: &[(String, Vec<f32>, Vec<usize>)]) -> Result<()> {
    let views: Vec<F32Tensor> =
        tensors.iter().map(|(name, values, shape)| F32Tensor { name, shape, values }).collect();
    Ok(gemma4_store::write_f32(path, &views, &[])?)
}
