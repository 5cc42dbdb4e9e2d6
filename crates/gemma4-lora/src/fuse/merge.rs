//! The merge itself, one tensor at a time into a [`StreamingWriter`]: raw bytes copied, a dtype
//! conversion in chunks, or `W' = W + scale·B·A` in f32 (stacked experts one `[out, in]` slice
//! at a time) cast back to the output dtype.

use std::path::Path;

use burn::tensor::{DType, Tensor};
use gemma4_model::Checkpoint;
use gemma4_store::StreamingWriter;
use gemma4_store::safetensors::{decode, encode, float_width};

use super::plan::Planned;
use crate::adapter::LoraModule;
use crate::error::{LoraError, Result};

/// Values converted per piece when a whole tensor changes dtype (bounds memory for embeddings).
const CONVERT_CHUNK: usize = 1 << 20;

/// Stream one tensor: raw bytes, converted in chunks, or merged (one expert at a time).
pub(super) fn write_tensor(
    w: &mut StreamingWriter,
    ckpt: &Checkpoint,
    p: &Planned,
    merge: Option<&LoraModule>,
    scale: f64,
    file: &Path,
) -> Result<()> {
    let name = &p.spec.name;
    let err = |reason: String| LoraError::Adapter {
        path: file.to_owned(),
        reason: format!("tensor {name}: {reason}"),
    };
    let bytes = ckpt.bytes(name).ok_or_else(|| err("not in the base checkpoint".into()))?;
    let (src, dst) = (p.source, p.spec.dtype);
    let Some(module) = merge else {
        if src == dst {
            return Ok(w.write(name, bytes)?);
        }
        let width = float_width(src).ok_or_else(|| err(format!("cannot convert {src:?}")))?;
        for chunk in bytes.chunks(CONVERT_CHUNK * width) {
            let values = decode(src, chunk).ok_or_else(|| err(format!("cannot decode {src:?}")))?;
            w.write(
                name,
                &encode(dst, &values).ok_or_else(|| err(format!("cannot encode {dst:?}")))?,
            )?;
        }
        return Ok(());
    };
    // Stacked experts `[E, out, in]` are merged one `[out, in]` slice at a time.
    let experts = module.num_experts;
    let per_expert = bytes.len() / experts;
    for e in 0..experts {
        let mut values = decode(src, &bytes[e * per_expert..(e + 1) * per_expert])
            .ok_or_else(|| err(format!("cannot decode {src:?}")))?;
        let delta = delta(module, (experts > 1).then_some(e), scale).into_data();
        let delta = delta
            .try_to_vec_as::<f32>()
            .map_err(|e| err(format!("reading the adapter delta: {e:?}")))?;
        if delta.len() != values.len() {
            return Err(err(format!(
                "delta has {} values for {} weights",
                delta.len(),
                values.len()
            )));
        }
        values.iter_mut().zip(&delta).for_each(|(w, d)| *w += d);
        w.write(name, &encode(dst, &values).ok_or_else(|| err(format!("cannot encode {dst:?}")))?)?;
    }
    Ok(())
}

/// `scale·B·A` in f32 for one expert (or the whole module), row-major `[out, in]`.
pub(super) fn delta(module: &LoraModule, expert: Option<usize>, scale: f64) -> Tensor<2> {
    let (a, b) = module.factors(expert);
    b.cast(DType::F32).matmul(a.cast(DType::F32)).mul_scalar(scale)
}
