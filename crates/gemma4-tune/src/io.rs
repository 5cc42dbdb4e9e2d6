//! Small file helpers: read token ids from safetensors, write safetensors atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

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
        Dtype::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        Dtype::I32 => bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64).collect(),
        other => bail!("{}: tensor `{name}` has dtype {other:?}, expected I64 or I32", path.display()),
    };
    Ok(Some(IntTensor { values, shape: view.shape().to_vec() }))
}

/// Read the f32 tensor `name` from `st`, if present.
pub fn read_f32(st: &SafeTensors, path: &Path, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
    let view = match st.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    if view.dtype() != Dtype::F32 {
        bail!("{}: tensor `{name}` has dtype {:?}, expected F32", path.display(), view.dtype());
    }
    let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Some((v, view.shape().to_vec())))
}

/// Write f32 tensors to `path` through a temporary file and a rename: the file is complete or absent.
pub fn write_f32_atomic(path: &Path, tensors: &[(String, Vec<f32>, Vec<usize>)]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, v, _)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = HashMap::new();
    for ((name, _, shape), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).with_context(|| format!("tensor {name}"))?;
        views.insert(name.clone(), view);
    }
    let tmp = temp_path(path);
    safetensors::serialize_to_file(views, None, &tmp).with_context(|| {
        let _ = std::fs::remove_file(&tmp); // e.g. a full disk: no partial temporary stays
        format!("writing {}", tmp.display())
    })?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}", tmp.display(), path.display())
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
