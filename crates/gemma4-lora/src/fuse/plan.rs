//! The fuse plan: which base tensor each adapter module changes (checked against the
//! checkpoint), every output tensor in base order with its output dtype and size, and the
//! grouping of those tensors into shards as HF `save_pretrained` does.

use std::collections::BTreeMap;
use std::path::Path;

use gemma4_model::{Checkpoint, WeightDtype};
use gemma4_store::TensorSpec;
use gemma4_store::safetensors::float_width;
use safetensors::Dtype;

use crate::adapter::{LoraAdapter, LoraModule, ModuleSite};
use crate::error::{LoraError, Result};

/// One output tensor: its header entry and its dtype in the base.
pub(super) struct Planned {
    pub(super) spec: TensorSpec,
    pub(super) source: Dtype,
}

/// The base tensor each adapter module changes, checked against the checkpoint.
pub(super) fn merge_targets<'a>(
    ckpt: &Checkpoint,
    adapter: &'a LoraAdapter,
) -> Result<BTreeMap<String, &'a LoraModule>> {
    let mut out = BTreeMap::new();
    for (site, module) in &adapter.modules {
        let path = module.key.strip_prefix("base_model.model.").unwrap_or(&module.key);
        let ([rows_a, inp], [outp, cols_b]) = (module.lora_a.dims(), module.lora_b.dims());
        let (name, shape) = match site {
            ModuleSite::Proj(_) => (format!("{path}.weight"), vec![outp, inp]),
            ModuleSite::Experts { down, .. } => {
                // PEFT nests one `.base_layer` per further targeted parameter of `experts`.
                let experts = path.trim_end_matches(".base_layer");
                let param = if *down { "down_proj" } else { "gate_up_proj" };
                (format!("{experts}.{param}"), vec![module.num_experts, outp, inp])
            }
        };
        let err = |reason: String| LoraError::Adapter {
            path: ckpt.file_of(&name).unwrap_or(&ckpt.dir).to_owned(),
            reason,
        };
        let info = ckpt.tensors.get(&name).ok_or_else(|| err(format!("tensor {name} (adapted by {}) is not in the base checkpoint (hint: the adapter was made for another model)", module.key)))?;
        if info.shape != shape || rows_a != cols_b || rows_a % module.num_experts != 0 {
            let factors = format!(
                "lora_A [{rows_a}, {inp}], lora_B [{outp}, {cols_b}], {} expert(s)",
                module.num_experts
            );
            return Err(err(format!(
                "tensor {name}: shape {:?} does not fit the adapter {} ({factors})",
                info.shape, module.key
            )));
        }
        if float_width(info.dtype).is_none() {
            return Err(err(format!(
                "tensor {name}: dtype {:?} cannot be merged (expected F32, F16 or BF16)",
                info.dtype
            )));
        }
        if out.insert(name.clone(), module).is_some() {
            return Err(err(format!("tensor {name}: adapted by two modules")));
        }
    }
    Ok(out)
}

/// Every base tensor in its base order (file, then offset), with its output dtype and size.
pub(super) fn plan(
    ckpt: &Checkpoint,
    merges: &BTreeMap<String, &LoraModule>,
    dtype: Option<WeightDtype>,
) -> Result<Vec<Planned>> {
    let mut names: Vec<(&Path, usize, &String)> = Vec::with_capacity(ckpt.tensors.len());
    for name in ckpt.tensors.keys() {
        // The data's address inside its mapped file orders tensors as the file stores them.
        let place = ckpt.file_of(name).zip(ckpt.bytes(name));
        let (file, bytes) = place.ok_or_else(|| LoraError::Adapter {
            path: ckpt.dir.clone(),
            reason: format!("tensor {name}: not readable"),
        })?;
        names.push((file, bytes.as_ptr() as usize, name));
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for (_, _, name) in names {
        let info = &ckpt.tensors[name];
        let source = info.dtype;
        let convert = dtype.map(WeightDtype::safetensors).filter(|_| float_width(source).is_some());
        let out_dtype = convert.unwrap_or(source);
        let len = match float_width(out_dtype) {
            Some(w) if out_dtype != source || merges.contains_key(name) => {
                info.shape.iter().product::<usize>() * w
            }
            _ => ckpt.bytes(name).map_or(0, <[u8]>::len),
        };
        out.push(Planned {
            spec: TensorSpec {
                name: name.clone(),
                dtype: out_dtype,
                shape: info.shape.clone(),
                len,
            },
            source,
        });
    }
    Ok(out)
}

/// Group tensors into shards of at most `max` bytes, in order (HF `split_state_dict_into_shards`).
pub(super) fn split(plan: &[Planned], max: u64) -> Vec<&[Planned]> {
    let mut shards = Vec::new();
    let (mut start, mut size) = (0, 0u64);
    for (i, p) in plan.iter().enumerate() {
        let len = p.spec.len as u64;
        if i > start && size + len > max {
            shards.push(&plan[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    shards.push(&plan[start..]);
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(name: &str, len: usize) -> Planned {
        Planned {
            spec: TensorSpec { name: name.into(), dtype: Dtype::U8, shape: vec![len], len },
            source: Dtype::U8,
        }
    }

    #[test]
    fn shards_split_like_save_pretrained() {
        let plan: Vec<Planned> = [("a", 4), ("b", 4), ("c", 9), ("d", 1), ("e", 2)]
            .iter()
            .map(|&(n, l)| planned(n, l))
            .collect();
        let names = |s: &[&[Planned]]| {
            s.iter()
                .map(|sh| sh.iter().map(|p| p.spec.name.as_str()).collect::<String>())
                .collect::<Vec<_>>()
        };
        // A tensor larger than the limit gets a shard of its own.
        assert_eq!(names(&split(&plan, 8)), ["ab", "c", "de"]);
        assert_eq!(names(&split(&plan, 100)), ["abcde"]);
        assert_eq!(names(&split(&plan, 1)), ["a", "b", "c", "d", "e"]);
    }
}
