//! PEFT adapter files in and out: `adapter_config.json` + `adapter_model.safetensors`.
//!
//! Keys are `base_model.model.<HF module path>.lora_{A,B}.weight` (`model.layers…` for text-only
//! checkpoints, `model.language_model.layers…` for multimodal ones), expert parameters in PEFT's
//! `ParamWrapper` layout. Loading is strict where PEFT is silent: a key that matches no module of
//! the model, a missing factor or a wrong shape is an error naming the tensor.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, Tensor, TensorData};
use gemma4_model::Gemma4TextModel;
use gemma4_store::safetensors::decode;
use gemma4_store::{F32Tensor, StagedDir, write_atomic, write_f32};
use safetensors::SafeTensors;

use crate::adapter::{LoraAdapter, LoraModule, ModuleSite};
use crate::config::LoraConfig;
use crate::error::{LoraError, Result};
use crate::layout::Layout;
use crate::target::peft_key;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Write the adapter into `dir`, whole or not at all: the files go into a staged sibling
/// directory that then replaces `dir` ([`StagedDir`]).
pub fn save(adapter: &LoraAdapter, dir: &Path) -> Result<()> {
    let stage = StagedDir::begin(dir)?;
    save_files(adapter, stage.path())?;
    Ok(stage.commit()?)
}

/// Write the two adapter files into an existing directory (each complete or absent); for a
/// directory of several outputs, such as a checkpoint being staged.
pub fn save_files(adapter: &LoraAdapter, dir: &Path) -> Result<()> {
    let path = dir.join(WEIGHTS_FILE);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (key, t) in adapter.tensors() {
        let shape = t.dims().to_vec();
        let values = t.cast(DType::F32).into_data().try_to_vec_as::<f32>().map_err(|e| {
            LoraError::Adapter { path: path.clone(), reason: format!("{key}: {e:?}") }
        })?;
        tensors.push((key, shape, values));
    }
    let views: Vec<F32Tensor> =
        tensors.iter().map(|(name, shape, values)| F32Tensor { name, shape, values }).collect();
    write_f32(&path, &views, &[("format", "pt")])?;
    Ok(write_atomic(&dir.join(CONFIG_FILE), adapter.config.to_json().as_bytes())?)
}

/// Read an adapter written by PEFT (or by us) for `model`.
pub fn load(dir: &Path, model: &Gemma4TextModel) -> Result<LoraAdapter> {
    load_for(dir, &Layout::from_model(model))
}

/// Read an adapter for a model described by `layout` (from the model, or from its config alone).
pub fn load_for(dir: &Path, layout: &Layout) -> Result<LoraAdapter> {
    let config = LoraConfig::from_file(&dir.join(CONFIG_FILE))?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes =
        std::fs::read(&path).map_err(|source| LoraError::Io { path: path.clone(), source })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| LoraError::Adapter {
        path: path.clone(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    let err = |reason: String| LoraError::Adapter { path: path.clone(), reason };
    // PEFT strips the adapter name on save; accept `.lora_A.default.weight` too.
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (key, view) in st.tensors() {
        let unsupported = || err(format!("{key}: dtype {:?} is not supported", view.dtype()));
        let values = decode(view.dtype(), view.data()).ok_or_else(unsupported)?;
        // A NaN/inf factor would be trained on, or fused into every weight it touches (issue 16).
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "tensor {key}: value {} at index {i} is not finite; the adapter is unusable",
                values[i]
            )));
        }
        tensors.insert(
            key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."),
            (view.shape().to_vec(), values),
        );
    }
    let device = &layout.device;
    let mut take = |key: &str, shape: [usize; 2]| -> Result<Option<Tensor<2>>> {
        match tensors.remove(key) {
            None => Ok(None),
            Some((s, _)) if s != shape => {
                Err(err(format!("tensor {key}: expected shape {shape:?}, found {s:?}")))
            }
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
                modules.insert(
                    ModuleSite::Proj(p.site),
                    LoraModule { key: key.clone(), lora_a, lora_b, num_experts: 1 },
                );
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
        return Err(err(format!(
            "{} tensor(s) match no module of the model, e.g. {key} {shape:?}{hint}",
            tensors.len()
        )));
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
            let fits = tensors.get(&ka).is_some_and(|(s, _)| *s == [re, inp])
                && tensors.get(&kb).is_some_and(|(s, _)| *s == [outp, re]);
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
