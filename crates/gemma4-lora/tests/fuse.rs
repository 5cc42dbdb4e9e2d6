//! Contract tests for `fuse`: our fused tensors equal PEFT's `merge_and_unload()` (experts
//! included), the fused checkpoint gives the adapter's logits, towers and every other tensor stay
//! byte-identical, shards and index follow `save_pretrained`, dtypes convert, and the output
//! directory appears whole or not at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device, Tensor};
use gemma4_lora::{FuseOptions, FuseReport, LoraAdapter, fuse, peft_io};
use gemma4_model::{Checkpoint, Gemma4TextModel, NoAdapter, TokenBatch, WeightDtype};
use safetensors::{Dtype, SafeTensors};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn load(dir: &Path) -> Gemma4TextModel {
    Gemma4TextModel::from_dir(dir, &Device::flex(), DType::F32).unwrap().0
}

fn adapter(name: &str, model: &Gemma4TextModel) -> LoraAdapter {
    peft_io::load(&fixture(name).join("peft"), model).unwrap()
}

/// Fuse fixture `name`'s PEFT adapter into `out`.
fn fuse_fixture(name: &str, out: &Path, opts: &FuseOptions) -> FuseReport {
    let model = load(&fixture(name));
    fuse(&fixture(name), &adapter(name, &model), out, opts).unwrap()
}

fn opts(dtype: Option<WeightDtype>) -> FuseOptions {
    FuseOptions { dtype, ..FuseOptions::default() }
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap()
}

/// PEFT's merged tensors (f32, base names).
fn peft_merged(name: &str) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(fixture(name).join("peft/merged.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )
        })
        .collect()
}

/// The fixture's golden input ids as a batch.
fn golden_batch(name: &str) -> TokenBatch {
    let bytes = std::fs::read(fixture(name).join("peft/golden.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let [b, t] = ids.shape().try_into().unwrap();
    TokenBatch::new(
        ids.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect(),
        b,
        t,
    )
}

fn logits(
    model: &Gemma4TextModel,
    batch: &TokenBatch,
    adapter: &dyn gemma4_model::Adapter,
) -> Vec<f32> {
    values(model.logits(model.forward_hidden(batch, adapter, false).unwrap().hidden))
}

/// Same tensor names, shapes, in order of the base; dtypes as `dtype` says.
fn assert_same_layout(base: &Checkpoint, fused: &Checkpoint, dtype: Option<WeightDtype>) {
    assert_eq!(base.tensors.keys().collect::<Vec<_>>(), fused.tensors.keys().collect::<Vec<_>>());
    for (name, info) in &base.tensors {
        let f = &fused.tensors[name];
        assert_eq!(f.shape, info.shape, "{name}");
        assert_eq!(f.dtype, dtype.map_or(info.dtype, WeightDtype::safetensors), "{name}");
    }
}

#[test]
fn fused_tensors_equal_peft_merge_and_unload() {
    // e2b_like is stored in bf16 while PEFT merged in f32: compare an f32 fuse there.
    for (name, dtype) in [("dense", None), ("e2b_like", Some(WeightDtype::F32)), ("moe_keqv", None)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("fused");
        let report = fuse_fixture(name, &out, &opts(dtype));
        let (base, fused) =
            (Checkpoint::open(&fixture(name)).unwrap(), Checkpoint::open(&out).unwrap());
        assert_same_layout(&base, &fused, dtype);
        let merged = peft_merged(name);
        assert_eq!(
            report.merged,
            merged.len(),
            "{name}: every tensor PEFT changed, and only those"
        );
        assert_eq!(report.merged + report.copied, base.tensors.len());
        if name == "moe_keqv" {
            assert!(
                merged.keys().any(|k| k.ends_with("experts.gate_up_proj"))
                    && merged.keys().any(|k| k.ends_with("experts.down_proj"))
            );
        }
        for (tensor, want) in &merged {
            let err = rel_l2(&fused.to_f32(tensor).unwrap(), want);
            assert!(err < 1e-5, "{name}: {tensor}: relative L2 to PEFT's merge {err:.3e}");
        }
        for tensor in base.tensors.keys().filter(|t| !merged.contains_key(*t)) {
            assert_eq!(
                fused.to_f32(tensor).unwrap(),
                base.to_f32(tensor).unwrap(),
                "{name}: {tensor} must not change"
            );
            if dtype.is_none() {
                assert_eq!(
                    fused.bytes(tensor),
                    base.bytes(tensor),
                    "{name}: {tensor} must be byte-identical"
                );
            }
        }
    }
}

#[test]
fn keep_casts_merged_weights_back_to_the_source_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let (keep, f32_out) = (tmp.path().join("keep"), tmp.path().join("f32"));
    fuse_fixture("e2b_like", &keep, &opts(None));
    fuse_fixture("e2b_like", &f32_out, &opts(Some(WeightDtype::F32)));
    let (base, keep, wide) = (
        Checkpoint::open(&fixture("e2b_like")).unwrap(),
        Checkpoint::open(&keep).unwrap(),
        Checkpoint::open(&f32_out).unwrap(),
    );
    assert_same_layout(&base, &keep, None);
    for name in peft_merged("e2b_like").keys() {
        assert_eq!(keep.tensors[name].dtype, Dtype::BF16);
        let rounded: Vec<f32> =
            wide.to_f32(name).unwrap().iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        assert_eq!(keep.to_f32(name).unwrap(), rounded, "{name}: bf16 of the f32 merge");
    }
    let config = std::fs::read(fixture("e2b_like").join("config.json")).unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("keep/config.json")).unwrap(),
        config,
        "config.json copied as is"
    );
}

#[test]
fn fused_logits_match_adapter_logits() {
    let fixtures = [
        "dense",
        "e2b_like",
        "moe_keqv",
        "keqv_bias_untied",
        "multimodal",
        "per_layer_config",
        "bidirectional",
    ];
    for name in fixtures {
        let model = load(&fixture(name));
        let adapter = adapter(name, &model);
        let batch = golden_batch(name);
        let want = logits(&model, &batch, &adapter);
        // Half-precision fixtures: fuse to f32 so the comparison measures the merge, not rounding.
        let dtype = if matches!(name, "e2b_like" | "keqv_bias_untied") {
            Some(WeightDtype::F32)
        } else {
            None
        };
        let sharded = name == "multimodal";
        let max_shard_size = if sharded { 150_000 } else { FuseOptions::default().max_shard_size };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("fused");
        let report = fuse(
            &fixture(name),
            &adapter,
            &out,
            &FuseOptions { dtype, max_shard_size, force: false },
        )
        .unwrap();
        let fused = load(&out);
        let err = rel_l2(&logits(&fused, &batch, &NoAdapter), &want);
        assert!(err < 1e-5, "{name}: fused logits vs base + adapter: relative L2 {err:.3e}");
        assert!(report.merged > 0 && (report.shards > 1) == sharded, "{name}: {report:?}");
        if sharded {
            check_towers_and_index(&fixture(name), &out);
        }
    }
}

/// Towers byte-identical, the index valid and complete, no stray file carried over.
fn check_towers_and_index(base_dir: &Path, out: &Path) {
    let (base, fused) = (Checkpoint::open(base_dir).unwrap(), Checkpoint::open(out).unwrap());
    assert_same_layout(&base, &fused, None);
    let towers: Vec<&String> = base
        .tensors
        .keys()
        .filter(|n| !n.starts_with("model.language_model.") && *n != "lm_head.weight")
        .collect();
    assert!(
        towers.iter().any(|n| n.starts_with("model.vision_tower."))
            && towers.iter().any(|n| n.starts_with("model.audio_tower."))
    );
    for name in towers {
        assert_eq!(fused.bytes(name), base.bytes(name), "{name}: towers are kept byte-identical");
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let weight_map = index["weight_map"].as_object().unwrap();
    assert_eq!(weight_map.keys().collect::<Vec<_>>(), base.tensors.keys().collect::<Vec<_>>());
    let total: u64 = fused.tensors.keys().map(|n| fused.bytes(n).unwrap().len() as u64).sum();
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total));
    for (name, file) in weight_map {
        assert_eq!(fused.file_of(name).unwrap(), out.join(file.as_str().unwrap()), "{name}");
    }
    assert!(
        !out.join("consolidated.safetensors").exists() && !out.join("model.safetensors").exists()
    );
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        std::fs::read(base_dir.join("config.json")).unwrap()
    );
}

#[test]
fn small_max_shard_size_writes_several_shards_and_an_index_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (single, sharded) = (tmp.path().join("single"), tmp.path().join("sharded"));
    let one = fuse_fixture("moe_keqv", &single, &FuseOptions::default());
    let many = fuse_fixture(
        "moe_keqv",
        &sharded,
        &FuseOptions { max_shard_size: one.bytes / 4, ..FuseOptions::default() },
    );
    assert_eq!((one.shards, one.bytes), (1, many.bytes));
    assert!(many.shards >= 4, "{many:?}");
    assert!(
        single.join("model.safetensors").is_file()
            && !single.join("model.safetensors.index.json").exists()
    );
    let mut files: Vec<String> = std::fs::read_dir(&sharded)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let n = many.shards;
    let mut want: Vec<String> =
        (1..=n).map(|k| format!("model-{k:05}-of-{n:05}.safetensors")).collect();
    want.extend(["config.json".into(), "model.safetensors.index.json".into()]);
    want.sort();
    assert_eq!(files, want);
    // Every shard stays under the limit (no single tensor here exceeds it).
    for f in files.iter().filter(|f| f.starts_with("model-")) {
        let bytes = std::fs::read(sharded.join(f)).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert!(
            st.tensors().iter().map(|(_, v)| v.data().len() as u64).sum::<u64>() <= one.bytes / 4,
            "{f}"
        );
    }
    let batch = golden_batch("moe_keqv");
    assert_eq!(
        logits(&load(&sharded), &batch, &NoAdapter),
        logits(&load(&single), &batch, &NoAdapter)
    );
    // Only the two output directories remain: no staging directory is left behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn dtype_bf16_writes_bf16_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let (f32_out, bf16_out) = (tmp.path().join("f32"), tmp.path().join("bf16"));
    fuse_fixture("dense", &f32_out, &FuseOptions::default());
    fuse_fixture("dense", &bf16_out, &opts(Some(WeightDtype::Bf16)));
    let (wide, narrow) =
        (Checkpoint::open(&f32_out).unwrap(), Checkpoint::open(&bf16_out).unwrap());
    assert_same_layout(
        &Checkpoint::open(&fixture("dense")).unwrap(),
        &narrow,
        Some(WeightDtype::Bf16),
    );
    for name in wide.tensors.keys() {
        let rounded: Vec<f32> =
            wide.to_f32(name).unwrap().iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        assert_eq!(narrow.to_f32(name).unwrap(), rounded, "{name}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bf16_out.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["dtype"], "bfloat16");
    let model = Gemma4TextModel::from_dir(&bf16_out, &Device::flex(), DType::F32).unwrap().0;
    assert_eq!(model.config.hidden_size, 64);
}

#[test]
fn output_appears_whole_or_not_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fused");
    // The dense adapter (text-only names) cannot fuse into the multimodal base: an error
    // naming the tensor, and nothing at `out`, no staging directory either.
    let dense = load(&fixture("dense"));
    let e = fuse(&fixture("multimodal"), &adapter("dense", &dense), &out, &FuseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.layers.0.") && e.contains("not in the base checkpoint"), "{e}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // An existing non-empty output is kept unless forced; with force it is replaced.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = fuse(&fixture("dense"), &adapter("dense", &dense), &out, &FuseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--force"), "{e}");
    assert!(out.join("keep.txt").is_file());
    fuse(
        &fixture("dense"),
        &adapter("dense", &dense),
        &out,
        &FuseOptions { force: true, ..FuseOptions::default() },
    )
    .unwrap();
    assert!(!out.join("keep.txt").exists() && out.join("model.safetensors").is_file());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
