//! A trained adapter as a llama.cpp LoRA GGUF (`llama-cli --lora`, llama-cpp-python
//! `lora_path`), for its base in the same architecture, whether that base came from safetensors
//! (exported with `fuse --gguf`) or is a GGUF. Mirrors llama.cpp's `convert_lora_to_gguf.py`
//! and its loader (`src/llama-adapter.cpp`): `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, tensors `<base tensor>.lora_a` `[r, in]` and `.lora_b` `[out, r]`
//! (PEFT's orientation; GGUF lists the dims reversed), F32.
//!
//! llama.cpp scales each pair by `alpha / r` with one alpha per file. We write
//! `alpha = scale · r` (the config's `r`), so plain LoRA keeps PEFT's alpha, and fold whatever
//! else differs (rsLoRA's `alpha/√r`, a module of another rank) into `lora_b`. Only projections
//! llama.cpp runs through its LoRA matmul are written; anything else is refused before writing.

use std::io::Write;
use std::path::Path;

use burn::tensor::DType;
use gemma4_model::Gemma4TextConfig;
use gemma4_model::GgmlType;
use gemma4_model::gguf_out::{
    GgufValue, HeaderTensor, architecture, header_bytes, llama_name, padding, quantize_checked,
};

use crate::adapter::{LoraAdapter, ModuleSite};
use crate::error::{LoraError, Result};

/// The llama.cpp tensors whose products go through `build_lora_mm` in the Gemma 3/4 graphs.
const LORA_TENSORS: &[&str] =
    &["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// One pair to write: llama.cpp base tensor name, `lora_a` `[r, in]`, `lora_b` `[out, r]`.
struct Pair {
    base: String,
    a: (Vec<f32>, [usize; 2]),
    b: (Vec<f32>, [usize; 2]),
}

fn values(t: &burn::tensor::Tensor<2>, key: &str) -> Result<(Vec<f32>, [usize; 2])> {
    let dims = t.dims();
    let v = t
        .clone()
        .cast(DType::F32)
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| LoraError::Target(format!("{key}: reading the factor: {e:?}")))?;
    Ok((v, dims))
}

/// Every module as a llama.cpp pair, or a refusal naming the module.
fn pairs(adapter: &LoraAdapter) -> Result<Vec<Pair>> {
    let alpha_r = adapter.config.r as f64;
    let mut out = Vec::new();
    for (site, m) in &adapter.modules {
        let refuse = |why: &str| LoraError::Target(format!("{}: {why}", m.key));
        if !matches!(site, ModuleSite::Proj(_)) {
            return Err(refuse("MoE expert adapters are not written to GGUF yet"));
        }
        let path = m.key.strip_prefix("base_model.model.").unwrap_or(&m.key);
        let short = ["model.language_model.", "model."]
            .iter()
            .find_map(|p| path.strip_prefix(p))
            .unwrap_or(path);
        let base = llama_name(&format!("{short}.weight"))
            .filter(|n| LORA_TENSORS.iter().any(|t| n.ends_with(&format!(".{t}.weight"))))
            .ok_or_else(|| {
                refuse("llama.cpp applies LoRA to attention and MLP projections only")
            })?;
        let a = values(&m.lora_a, &m.a_key())?;
        let mut b = values(&m.lora_b, &m.b_key())?;
        // llama.cpp: alpha / r_module = scale · r / r_module; fold r_module / r into B.
        let fold = a.1[0] as f64 / alpha_r;
        if fold != 1.0 {
            b.0.iter_mut().for_each(|x| *x = (*x as f64 * fold) as f32);
        }
        out.push(Pair { base, a, b });
    }
    if out.is_empty() {
        return Err(LoraError::Target("the adapter has no modules: nothing to export".into()));
    }
    Ok(out)
}

/// Write `adapter` (for a base of config `cfg`) as the llama.cpp LoRA GGUF `out`. Returns the
/// number of adapted tensors.
pub fn export_adapter_gguf(
    adapter: &LoraAdapter,
    cfg: &Gemma4TextConfig,
    out: &Path,
    name: &str,
) -> Result<usize> {
    let arch = architecture(cfg)?;
    if adapter.scale() == 0.0 {
        // llama.cpp reads alpha 0 as "no alpha" (scale 1), not as scale 0.
        return Err(LoraError::Target("lora_alpha 0: llama.cpp would apply scale 1".into()));
    }
    let pairs = pairs(adapter)?;
    let alpha = (adapter.scale() * adapter.config.r as f64) as f32;
    let metadata = vec![
        ("general.architecture".to_owned(), GgufValue::Str(arch.into())),
        ("general.type".to_owned(), GgufValue::Str("adapter".into())),
        ("general.name".to_owned(), GgufValue::Str(name.into())),
        ("adapter.type".to_owned(), GgufValue::Str("lora".into())),
        ("adapter.lora.alpha".to_owned(), GgufValue::F32(alpha)),
    ];
    let names: Vec<(String, String)> = pairs
        .iter()
        .map(|p| (format!("{}.lora_a", p.base), format!("{}.lora_b", p.base)))
        .collect();
    let mut header = Vec::new();
    for (p, (na, nb)) in pairs.iter().zip(&names) {
        header.push(HeaderTensor { name: na, shape: &p.a.1, ty: GgmlType::F32 });
        header.push(HeaderTensor { name: nb, shape: &p.b.1, ty: GgmlType::F32 });
    }
    let (head, _) = header_bytes(&metadata, &header)
        .ok_or_else(|| LoraError::Target("adapter tensors are not whole F32 values".into()))?;
    let mut data = Vec::with_capacity(pairs.len() * 2);
    for (p, (na, nb)) in pairs.iter().zip(&names) {
        data.push(quantize_checked(na, GgmlType::F32, &p.a.0)?);
        data.push(quantize_checked(nb, GgmlType::F32, &p.b.0)?);
    }
    gemma4_store::write_atomic_with(out, |f| {
        f.write_all(&head)?;
        for d in &data {
            f.write_all(d)?;
            f.write_all(&vec![0u8; padding(d.len())])?;
        }
        Ok(())
    })?;
    Ok(pairs.len())
}
