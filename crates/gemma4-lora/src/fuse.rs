//! Fuse a LoRA adapter into its base checkpoint: a new checkpoint directory that transformers
//! loads as-is, with the base's tensor names, shapes and layout (vision/audio towers included).
//!
//! Each adapted weight becomes `W' = W + scale·B·A` in f32 — PEFT's `merge_and_unload()`; for
//! MoE experts `W'_e = W_e + scale·B_e·A_e` with the factors of `LoraModule::factors` (PEFT
//! `ParamWrapper` layout) — then is cast back to the source dtype (or the requested one).
//! Every other tensor is copied byte for byte, or converted when a dtype is requested.
//!
//! Streaming: the base is memory-mapped ([`Checkpoint`]) and each output shard is written by a
//! [`StreamingWriter`] tensor by tensor (experts one expert at a time, conversions in chunks),
//! so memory stays at about one tensor plus its f32 merge whatever the checkpoint's size.
//! Shards follow HF `save_pretrained`: one `model.safetensors`, or above `max_shard_size`
//! `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`. The directory is staged
//! beside `<out>` ([`StagedDir`]) and renamed to `<out>` at the end: on any error nothing is left
//! at `<out>`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, Tensor};
use gemma4_model::{Checkpoint, INDEX_FILE, SINGLE_FILE, WeightDtype};
use gemma4_store::safetensors::{decode, encode, float_width};
use gemma4_store::{StagedDir, StreamingWriter, TensorSpec, write_atomic};
use safetensors::Dtype;

use crate::adapter::{LoraAdapter, LoraModule, ModuleSite};
use crate::error::{LoraError, Result};

/// HF's default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 5_000_000_000;

/// Files besides the weights that are copied when present (config.json is required).
pub const SIDE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
];

/// Values converted per piece when a whole tensor changes dtype (bounds memory for embeddings).
const CONVERT_CHUNK: usize = 1 << 20;

/// How to fuse.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// Convert every float tensor to this dtype (and set `dtype` in config.json); `None` keeps
    /// each tensor's dtype in the base (merged ones are cast back to it).
    pub dtype: Option<WeightDtype>,
    /// Bytes of tensor data per shard before a new shard starts (HF semantics: a tensor larger
    /// than this gets a shard of its own).
    pub max_shard_size: u64,
    /// Replace an existing non-empty output directory.
    pub force: bool,
}

impl Default for FuseOptions {
    fn default() -> Self {
        Self { dtype: None, max_shard_size: DEFAULT_MAX_SHARD_SIZE, force: false }
    }
}

/// What [`fuse`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// Tensors that received an adapter delta.
    pub merged: usize,
    /// Tensors copied (byte for byte, or converted to the requested dtype).
    pub copied: usize,
    /// Weight files written (1 = a single `model.safetensors`).
    pub shards: usize,
    /// Tensor data bytes written (the index's `metadata.total_size`).
    pub bytes: u64,
    /// Side files copied (config, tokenizer, templates, ...).
    pub files: Vec<String>,
}

/// One output tensor: its header entry and its dtype in the base.
struct Planned {
    spec: TensorSpec,
    source: Dtype,
}

/// Fuse `adapter` into the checkpoint in `base_dir`, writing a new checkpoint directory `out`.
pub fn fuse(
    base_dir: &Path,
    adapter: &LoraAdapter,
    out: &Path,
    opts: &FuseOptions,
) -> Result<FuseReport> {
    check_out_dir(base_dir, out, opts.force)?;
    if adapter.modules.is_empty() {
        return Err(LoraError::Target("the adapter has no modules: nothing to fuse".into()));
    }
    if !base_dir.join("config.json").is_file() {
        let source = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no config.json in the model directory",
        );
        return Err(LoraError::Io { path: base_dir.to_owned(), source });
    }
    let ckpt = Checkpoint::open(base_dir)?;
    let merges = merge_targets(&ckpt, adapter)?;
    let plan = plan(&ckpt, &merges, opts.dtype)?;
    let shards = split(&plan, opts.max_shard_size);
    let staging = StagedDir::begin(out)?;
    let names: Vec<String> = match shards.len() {
        1 => vec![SINGLE_FILE.to_owned()],
        n => (1..=n).map(|k| format!("model-{k:05}-of-{n:05}.safetensors")).collect(),
    };
    let scale = adapter.scale();
    for (shard, file) in shards.iter().zip(&names) {
        let path = staging.path().join(file);
        let mut writer = StreamingWriter::create(
            &path,
            shard.iter().map(|p| p.spec.clone()).collect(),
            &[("format", "pt")],
        )?;
        for p in shard.iter() {
            write_tensor(&mut writer, &ckpt, p, merges.get(&p.spec.name).copied(), scale, &path)?;
        }
        writer.finish()?;
    }
    let bytes = plan.iter().map(|p| p.spec.len as u64).sum();
    if shards.len() > 1 {
        write_index(staging.path(), &shards, &names, bytes)?;
    }
    let files = copy_side_files(base_dir, staging.path(), opts.dtype)?;
    staging.commit()?;
    Ok(FuseReport {
        merged: merges.len(),
        copied: plan.len() - merges.len(),
        shards: shards.len(),
        bytes,
        files,
    })
}

/// Refuse an output that exists and is not an empty directory (unless `force`), and one that
/// is or contains the base model directory.
pub fn check_out_dir(base_dir: &Path, out: &Path, force: bool) -> Result<()> {
    let err = |reason: &str| LoraError::Io {
        path: out.to_owned(),
        source: std::io::Error::other(reason.to_owned()),
    };
    if out.file_name().is_none() {
        return Err(err("the output must name a directory"));
    }
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(err("exists and is not a directory"));
    }
    let (base, out_c) = (base_dir.canonicalize(), out.canonicalize());
    if let (Ok(base), Ok(out_c)) = (base, out_c)
        && base.starts_with(&out_c)
    {
        return Err(err("is (or contains) the base model directory"));
    }
    let mut entries = std::fs::read_dir(out).map_err(io(out))?;
    if !force && entries.next().is_some() {
        return Err(err("exists and is not empty (hint: pass --force to replace it)"));
    }
    Ok(())
}

/// The base tensor each adapter module changes, checked against the checkpoint.
fn merge_targets<'a>(
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
fn plan(
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
fn split(plan: &[Planned], max: u64) -> Vec<&[Planned]> {
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

/// Stream one tensor: raw bytes, converted in chunks, or merged (one expert at a time).
fn write_tensor(
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
fn delta(module: &LoraModule, expert: Option<usize>, scale: f64) -> Tensor<2> {
    let (a, b) = module.factors(expert);
    b.cast(DType::F32).matmul(a.cast(DType::F32)).mul_scalar(scale)
}

/// `model.safetensors.index.json` as `save_pretrained` writes it.
fn write_index(dir: &Path, shards: &[&[Planned]], names: &[String], total_size: u64) -> Result<()> {
    let mut weight_map = serde_json::Map::new();
    let mut params = 0u64;
    for (shard, file) in shards.iter().zip(names) {
        for p in shard.iter() {
            weight_map.insert(p.spec.name.clone(), file.clone().into());
            params += p.spec.shape.iter().product::<usize>() as u64;
        }
    }
    let index = serde_json::json!({
        "metadata": { "total_parameters": params, "total_size": total_size },
        "weight_map": weight_map,
    });
    write_json(&dir.join(INDEX_FILE), &index)
}

/// Copy the side files present in `base`; config.json gets the new dtype when one is requested.
fn copy_side_files(base: &Path, dir: &Path, dtype: Option<WeightDtype>) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in SIDE_FILES {
        let (from, to) = (base.join(name), dir.join(name));
        if !from.is_file() {
            continue;
        }
        match dtype {
            Some(d) if *name == "config.json" => {
                write_json(&to, &config_with_dtype(&from, d.hf_name())?)?
            }
            _ => {
                std::fs::copy(&from, &to).map_err(io(&from))?;
            }
        }
        copied.push(name.to_string());
    }
    Ok(copied)
}

/// config.json with `dtype`/`torch_dtype` set to `hf` at the top level and in every sub-config
/// that carries one (`text_config`, `vision_config`, ...).
fn config_with_dtype(path: &Path, hf: &str) -> Result<serde_json::Value> {
    let err = |reason: String| LoraError::Config { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let top = json.as_object_mut().ok_or_else(|| err("not a JSON object".into()))?;
    if !top.contains_key("dtype") && !top.contains_key("torch_dtype") {
        top.insert("dtype".into(), hf.into());
    }
    let set = |obj: &mut serde_json::Map<String, serde_json::Value>| {
        for key in ["dtype", "torch_dtype"] {
            if let Some(v) = obj.get_mut(key) {
                *v = hf.into();
            }
        }
    };
    set(top);
    top.values_mut().filter_map(serde_json::Value::as_object_mut).for_each(set);
    Ok(json)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| LoraError::Config { path: path.to_owned(), reason: e.to_string() })?;
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

/// An I/O error at `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoraError {
    let path = path.to_owned();
    move |source| LoraError::Io { path, source }
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

    #[test]
    fn an_existing_non_empty_output_is_refused_without_force() {
        let base = tempfile::tempdir().unwrap();
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("fused");
        check_out_dir(base.path(), &out, false).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_out_dir(base.path(), &out, false).unwrap(); // empty is fine
        std::fs::write(out.join("x"), "x").unwrap();
        let e = check_out_dir(base.path(), &out, false).unwrap_err().to_string();
        assert!(e.contains("fused") && e.contains("--force"), "{e}");
        check_out_dir(base.path(), &out, true).unwrap();
        // Never the base directory itself (or a directory holding it), even with force.
        assert!(check_out_dir(base.path(), base.path(), true).is_err());
        std::fs::create_dir(out.join("model")).unwrap();
        assert!(check_out_dir(&out.join("model"), &out, true).is_err());
    }

    #[test]
    fn config_dtype_is_rewritten_at_top_level_and_in_sub_configs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"dtype":"float32","text_config":{"dtype":"float32","hidden_size":8},"vision_config":{"torch_dtype":"float32"}}"#).unwrap();
        let json = config_with_dtype(&path, "bfloat16").unwrap();
        assert_eq!(json["dtype"], "bfloat16");
        assert_eq!(json["text_config"]["dtype"], "bfloat16");
        assert_eq!(json["text_config"]["hidden_size"], 8);
        assert_eq!(json["vision_config"]["torch_dtype"], "bfloat16");
    }
}
