//! PEFT adapter files in and out: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Keys are `base_model.model.<HF module path>.lora_{A,B}.weight` (`model.layers…` for text-only
//! checkpoints, `model.language_model.layers…` for multimodal ones), expert parameters in PEFT's
//! `ParamWrapper` layout. Loading is strict where PEFT is silent: a key that matches no module of
//! the model, a missing factor or a wrong shape is an error naming the tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData};
use gemma4_model::Gemma4TextModel;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::adapter::{LoraAdapter, LoraModule, ModuleSite};
use crate::config::LoraConfig;
use crate::error::{LoraError, Result};
use crate::layout::Layout;
use crate::target::peft_key;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Write the adapter into `dir`, whole or not at all: the files go into a temporary sibling
/// directory that then replaces `dir` (an existing `dir` is moved aside first and removed last).
pub fn save(adapter: &LoraAdapter, dir: &Path) -> Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "adapter".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let old = dir.with_file_name(format!(".{name}.old-{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LoraError::Io { path, source }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    if let Err(e) = save_files(adapter, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let had_old = dir.exists();
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Write the two adapter files into an existing directory (each through a temp name + rename).
pub fn save_files(adapter: &LoraAdapter, dir: &Path) -> Result<()> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (key, t) in adapter.tensors() {
        let shape = t.dims().to_vec();
        let values = t.cast(DType::F32).into_data().try_to_vec_as::<f32>().map_err(|e| LoraError::Adapter { path: dir.to_owned(), reason: format!("{key}: {e:?}") })?;
        bufs.push((key, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let mut views = HashMap::new();
    for (key, shape, bytes) in &bufs {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| LoraError::Adapter { path: dir.to_owned(), reason: e.to_string() })?;
        views.insert(key.clone(), view);
    }
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let weights = safetensors::serialize(views, metadata).map_err(|e| LoraError::Adapter { path: dir.to_owned(), reason: e.to_string() })?;
    write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
    write_atomic(&dir.join(CONFIG_FILE), adapter.config.to_json().as_bytes())
}

/// Write bytes to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|source| LoraError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        LoraError::Io { path: path.to_owned(), source }
    })
}

/// Read an adapter written by PEFT (or by us) for `model`.
pub fn load(dir: &Path, model: &Gemma4TextModel) -> Result<LoraAdapter> {
    load_for(dir, &Layout::from_model(model))
}

/// Read an adapter for a model described by `layout` (from the model, or from its config alone).
pub fn load_for(dir: &Path, layout: &Layout) -> Result<LoraAdapter> {
    let config = LoraConfig::from_file(&dir.join(CONFIG_FILE))?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|source| LoraError::Io { path: path.clone(), source })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| LoraError::Adapter { path: path.clone(), reason: format!("not a valid safetensors file: {e}") })?;
    let err = |reason: String| LoraError::Adapter { path: path.clone(), reason };
    // PEFT strips the adapter name on save; accept `.lora_A.default.weight` too.
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (key, view) in st.tensors() {
        let values = decode(&view).map_err(|r| err(format!("{key}: {r}")))?;
        tensors.insert(key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."), (view.shape().to_vec(), values));
    }
    let device = &layout.device;
    let mut take = |key: &str, shape: [usize; 2]| -> Result<Option<Tensor<2>>> {
        match tensors.remove(key) {
            None => Ok(None),
            Some((s, _)) if s != shape => Err(err(format!("tensor {key}: expected shape {shape:?}, found {s:?}"))),
            Some((_, v)) => Ok(Some(Tensor::from_data(TensorData::new(v, shape), device))),
        }
    };
    let r = config.r;
    let mut modules = BTreeMap::new();
    for p in &layout.projections {
        let key = peft_key(&p.path);
        let a = take(&format!("{key}.lora_A.weight"), [r, p.in_features])?;
        let b = take(&format!("{key}.lora_B.weight"), [p.out_features, r])?;
        match (a, b) {
            (Some(lora_a), Some(lora_b)) => {
                modules.insert(ModuleSite::Proj(p.site), LoraModule { key: key.clone(), lora_a, lora_b, num_experts: 1 });
            }
            (None, None) => {}
            _ => return Err(err(format!("{key}: lora_A and lora_B must both be present"))),
        }
    }
    load_experts(layout, &config, &mut tensors, &mut modules).map_err(err)?;
    if let Some((key, (shape, _))) = tensors.iter().next() {
        let hint = if key.contains("language_model") != layout.prefix.contains("language_model") {
            " (hint: the adapter was made for the other checkpoint layout: text-only `model.layers…` vs multimodal `model.language_model.layers…`)"
        } else {
            ""
        };
        return Err(err(format!("{} tensor(s) match no module of the model, e.g. {key} {shape:?}{hint}", tensors.len())));
    }
    if modules.is_empty() {
        return Err(err("the adapter has no LoRA tensors".into()));
    }
    Ok(LoraAdapter { config, modules, training: false })
}

/// Expert factors: under `…experts` (+ `.base_layer`s); which parameter each belongs to follows
/// from its shapes (gate_up: in H → out 2I; down: in I → out H).
fn load_experts(
    layout: &Layout,
    config: &LoraConfig,
    tensors: &mut BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    modules: &mut BTreeMap<ModuleSite, LoraModule>,
) -> std::result::Result<(), String> {
    let device = &layout.device;
    for (layer, down, path, inp, outp, experts) in layout.experts.iter().cloned() {
        let experts_path = path.rsplit_once('.').map_or(path.as_str(), |(a, _)| a);
        let mut key = peft_key(experts_path);
        let re = config.r * experts;
        for _ in 0..4 {
            let (ka, kb) = (format!("{key}.lora_A.weight"), format!("{key}.lora_B.weight"));
            let fits = tensors.get(&ka).is_some_and(|(s, _)| *s == [re, inp]) && tensors.get(&kb).is_some_and(|(s, _)| *s == [outp, re]);
            if fits {
                let (_, a) = tensors.remove(&ka).unwrap_or_default();
                let (_, b) = tensors.remove(&kb).unwrap_or_default();
                let module = LoraModule {
                    key: key.clone(),
                    lora_a: Tensor::from_data(TensorData::new(a, [re, inp]), device),
                    lora_b: Tensor::from_data(TensorData::new(b, [outp, re]), device),
                    num_experts: experts,
                };
                modules.insert(ModuleSite::Experts { layer, down }, module);
                break;
            }
            key.push_str(".base_layer");
        }
    }
    Ok(())
}

fn decode(view: &TensorView) -> std::result::Result<Vec<f32>, String> {
    let d = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(format!("dtype {other:?} is not supported")),
    })
}
