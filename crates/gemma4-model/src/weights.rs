//! THE weight-name table, and the loader that follows it.
//!
//! Every HF tensor name the text decoder reads is a row of [`TABLE`] (names below the text
//! prefix, `{i}` = layer index) with the one transform applied to it. Our module fields carry
//! the HF names, so the module path is the row's name. [`DROPPED`] lists what a checkpoint may
//! carry that the text decoder deliberately ignores (vision/audio towers, the K/V of KV-shared
//! layers that early exports stored). After loading, every tensor in the checkpoint has been
//! used or matched a drop rule — anything else is an error naming it.
//!
//! Prefixes (spec §7.1): multimodal `model.language_model.`, text-only `model.`; `lm_head.weight`
//! (untied heads only) sits at the root in both.

use std::collections::BTreeSet;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::checkpoint::Checkpoint;
use crate::pieces::rows_per_piece;
use crate::config::Gemma4TextConfig;
use crate::error::{ModelError, Result};

/// How a checkpoint tensor becomes a model tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// As stored.
    Keep,
    /// Linear weight `[out, in]` → `[in, out]` (so the forward is `x·W`).
    Transpose,
    /// Stacked expert weights `[E, out, in]` → `[E, in, out]`.
    TransposeExperts,
    /// Stays in the mapped file; rows are gathered on the host per batch (the PLE table).
    Host,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Name below the text prefix (`{i}` = layer index), or at the root for `lm_head.weight`.
    pub name: &'static str,
    pub transform: Transform,
}

const fn row(name: &'static str, transform: Transform) -> Row {
    Row { name, transform }
}

use Transform::{Host, Keep, Transpose, TransposeExperts};

/// Every tensor the text decoder reads. HF `modeling_gemma4.py` names, verbatim.
pub const TABLE: &[Row] = &[
    row("embed_tokens.weight", Keep),
    row("embed_tokens_per_layer.weight", Host),
    row("per_layer_model_projection.weight", Transpose),
    row("per_layer_projection_norm.weight", Keep),
    row("norm.weight", Keep),
    row("lm_head.weight", Transpose),
    row("layers.{i}.input_layernorm.weight", Keep),
    row("layers.{i}.post_attention_layernorm.weight", Keep),
    row("layers.{i}.pre_feedforward_layernorm.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm.weight", Keep),
    row("layers.{i}.layer_scalar", Keep),
    row("layers.{i}.self_attn.q_proj.weight", Transpose),
    row("layers.{i}.self_attn.q_proj.bias", Keep),
    row("layers.{i}.self_attn.k_proj.weight", Transpose),
    row("layers.{i}.self_attn.k_proj.bias", Keep),
    row("layers.{i}.self_attn.v_proj.weight", Transpose),
    row("layers.{i}.self_attn.v_proj.bias", Keep),
    row("layers.{i}.self_attn.o_proj.weight", Transpose),
    row("layers.{i}.self_attn.o_proj.bias", Keep),
    row("layers.{i}.self_attn.q_norm.weight", Keep),
    row("layers.{i}.self_attn.k_norm.weight", Keep),
    row("layers.{i}.mlp.gate_proj.weight", Transpose),
    row("layers.{i}.mlp.up_proj.weight", Transpose),
    row("layers.{i}.mlp.down_proj.weight", Transpose),
    row("layers.{i}.per_layer_input_gate.weight", Transpose),
    row("layers.{i}.per_layer_projection.weight", Transpose),
    row("layers.{i}.post_per_layer_input_norm.weight", Keep),
    row("layers.{i}.router.proj.weight", Transpose),
    row("layers.{i}.router.scale", Keep),
    row("layers.{i}.router.per_expert_scale", Keep),
    row("layers.{i}.experts.gate_up_proj", TransposeExperts),
    row("layers.{i}.experts.down_proj", TransposeExperts),
    row("layers.{i}.pre_feedforward_layernorm_2.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm_1.weight", Keep),
    row("layers.{i}.post_feedforward_layernorm_2.weight", Keep),
];

/// Root-level name prefixes of the multimodal towers (mlx-lm `sanitize`, HF `Gemma4Model`).
pub const DROPPED: &[&str] = &[
    "model.vision_tower.",
    "model.audio_tower.",
    "model.embed_vision.",
    "model.embed_audio.",
    "model.multi_modal_projector.",
    "model.vision_embedder.",
];

/// Modules of KV-shared layers that early exports stored and the model never reads
/// (HF `_keys_to_ignore_on_load_unexpected`, mlx-lm #1240).
pub const DROPPED_IN_SHARED_LAYERS: &[&str] =
    &["self_attn.k_proj.", "self_attn.v_proj.", "self_attn.k_norm.", "self_attn.v_norm."];

/// Text-weight prefixes we recognise, most specific first.
const PREFIXES: &[&str] = &["model.language_model.", "model."];

/// What loading did with the checkpoint's tensors.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub used: usize,
    /// Names dropped by a [`DROPPED`] / [`DROPPED_IN_SHARED_LAYERS`] rule.
    pub dropped: Vec<String>,
}

/// Every tensor a checkpoint for `cfg` holds (text decoder only), with its HF shape, under
/// `prefix` (`model.` or `model.language_model.`). Used to write new checkpoints (the built-in
/// tiny model) and to check real layouts; the loader's requests must agree (tested).
pub fn expected_tensors(cfg: &Gemma4TextConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    let (v, e, l, d) = (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.hidden_size_per_layer_input);
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
    push(format!("{prefix}embed_tokens.weight"), vec![v, e]);
    if d > 0 {
        push(format!("{prefix}embed_tokens_per_layer.weight"), vec![cfg.vocab_size_per_layer_input, l * d]);
        push(format!("{prefix}per_layer_model_projection.weight"), vec![l * d, e]);
        push(format!("{prefix}per_layer_projection_norm.weight"), vec![d]);
    }
    push(format!("{prefix}norm.weight"), vec![e]);
    if !cfg.tie_word_embeddings {
        push("lm_head.weight".into(), vec![v, e]);
    }
    for (i, spec) in cfg.layers.iter().enumerate() {
        let p = format!("{prefix}layers.{i}.");
        let (h, hd, kv, m) = (cfg.num_attention_heads, spec.head_dim, spec.num_key_value_heads, spec.intermediate_size);
        for norm in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] {
            push(format!("{p}{norm}.weight"), vec![e]);
        }
        if cfg.layer_scalar {
            push(format!("{p}layer_scalar"), vec![1]);
        }
        let mut proj = |name: &str, out_f: usize, in_f: usize| {
            push(format!("{p}self_attn.{name}.weight"), vec![out_f, in_f]);
            if cfg.attention_bias {
                push(format!("{p}self_attn.{name}.bias"), vec![out_f]);
            }
        };
        proj("q_proj", h * hd, e);
        if spec.kv_donor.is_none() {
            proj("k_proj", kv * hd, e);
            if !spec.k_eq_v {
                proj("v_proj", kv * hd, e);
            }
        }
        proj("o_proj", e, h * hd);
        push(format!("{p}self_attn.q_norm.weight"), vec![hd]);
        if spec.kv_donor.is_none() {
            push(format!("{p}self_attn.k_norm.weight"), vec![hd]);
        }
        push(format!("{p}mlp.gate_proj.weight"), vec![m, e]);
        push(format!("{p}mlp.up_proj.weight"), vec![m, e]);
        push(format!("{p}mlp.down_proj.weight"), vec![e, m]);
        if d > 0 {
            push(format!("{p}per_layer_input_gate.weight"), vec![d, e]);
            push(format!("{p}per_layer_projection.weight"), vec![e, d]);
            push(format!("{p}post_per_layer_input_norm.weight"), vec![e]);
        }
        if cfg.enable_moe_block {
            let (n, mi) = (cfg.num_experts, cfg.moe_intermediate_size);
            push(format!("{p}router.proj.weight"), vec![n, e]);
            push(format!("{p}router.scale"), vec![e]);
            push(format!("{p}router.per_expert_scale"), vec![n]);
            push(format!("{p}experts.gate_up_proj"), vec![n, 2 * mi, e]);
            push(format!("{p}experts.down_proj"), vec![n, e, mi]);
            for norm in ["pre_feedforward_layernorm_2", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2"] {
                push(format!("{p}{norm}.weight"), vec![e]);
            }
        }
    }
    out
}

/// Swap the last two axes of a row-major array (tiled, output row blocks in parallel: loading
/// transposes every projection, billions of values for real checkpoints).
fn transpose_last_two<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> (Vec<f32>, [usize; D]) {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let (r, c) = (shape[D - 2], shape[D - 1]);
    let mut out = vec![0.0f32; values.len()];
    if r * c > 0 {
        for (src, dst) in values.chunks(r * c).zip(out.chunks_mut(r * c)) {
            // dst is [c, r]: block `jb` holds output rows jb·TILE .. (+TILE), i.e. source columns.
            dst.par_chunks_mut(TILE * r).enumerate().for_each(|(jb, block)| {
                let j0 = jb * TILE;
                let rows = block.len() / r;
                for i0 in (0..r).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(r) {
                        let row = &src[i * c + j0..i * c + j0 + rows];
                        for (dj, v) in row.iter().enumerate() {
                            block[dj * r + i] = *v;
                        }
                    }
                }
            });
        }
    }
    let mut t = shape;
    t.swap(D - 2, D - 1);
    (out, t)
}

/// A device tensor of `dtype` from f32 host values, converted on the host (in parallel) so
/// only `dtype`'s bytes cross to the device and no f32 copy is ever allocated there.
fn upload<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device, dtype: DType) -> Tensor<D> {
    use rayon::prelude::*;
    let data = match dtype {
        DType::F16 => TensorData::new(values.par_iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>(), shape),
        DType::BF16 => TensorData::new(values.par_iter().map(|&v| half::bf16::from_f32(v)).collect::<Vec<_>>(), shape),
        _ => return Tensor::<D>::from_data(TensorData::new(values, shape), (device, DType::F32)).cast(dtype),
    };
    Tensor::<D>::from_data(data, (device, dtype))
}

/// How a checkpoint name is handled: `Some(row)` = read through that table row,
/// `None` = dropped by a rule. Names neither read nor dropped give `Err`.
/// `shared_from`: index of the first KV-shared layer.
pub fn classify(name: &str, prefix: &str, shared_from: usize, tied: bool) -> std::result::Result<Option<Row>, String> {
    if name == "lm_head.weight" {
        return Ok(if tied { None } else { Some(table_row(name)) });
    }
    if DROPPED.iter().any(|p| name.starts_with(p)) || name.contains(".self_attn.rotary_emb.") {
        return Ok(None);
    }
    let local = name.strip_prefix(prefix).ok_or_else(|| format!("{name}: not under the text prefix {prefix}"))?;
    let mut parts = local.splitn(3, '.');
    let pattern = match (parts.next(), parts.next(), parts.next()) {
        (Some("layers"), Some(i), Some(rest)) => {
            let layer: usize = i.parse().map_err(|_| format!("{name}: bad layer index"))?;
            if layer >= shared_from && DROPPED_IN_SHARED_LAYERS.iter().any(|m| rest.starts_with(m)) {
                return Ok(None);
            }
            format!("layers.{{i}}.{rest}")
        }
        _ => local.to_owned(),
    };
    TABLE.iter().find(|r| r.name == pattern).map(|r| Some(*r)).ok_or_else(|| format!("{name}: no row in the weight table"))
}

/// The row for a table name (an internal invariant: the model asks only for table names).
pub fn table_row(name: &str) -> Row {
    match TABLE.iter().find(|r| r.name == name) {
        Some(r) => *r,
        None => panic!("weight `{name}` is not in weights::TABLE"),
    }
}

/// Reads tensors by table name, converts them, and remembers what it used.
pub struct Weights<'a> {
    pub ckpt: &'a Checkpoint,
    pub prefix: &'static str,
    pub device: Device,
    /// Dtype of projection/embedding weights; norms and scalars are always f32.
    pub dtype: DType,
    used: BTreeSet<String>,
}

impl<'a> Weights<'a> {
    pub fn new(ckpt: &'a Checkpoint, device: &Device, dtype: DType) -> Result<Self> {
        let prefix = PREFIXES
            .iter()
            .copied()
            .find(|p| ckpt.tensors.contains_key(&format!("{p}embed_tokens.weight")))
            .ok_or_else(|| ModelError::MissingTensor {
                name: "model.language_model.embed_tokens.weight (or model.embed_tokens.weight)".into(),
                dir: ckpt.dir.clone(),
            })?;
        Ok(Self { ckpt, prefix, device: device.clone(), dtype, used: BTreeSet::new() })
    }

    /// The checkpoint name of a table row.
    pub fn full_name(&self, name: &str, layer: Option<usize>) -> String {
        let local = match layer {
            Some(i) => name.replace("{i}", &i.to_string()),
            None => name.to_owned(),
        };
        if name == "lm_head.weight" { local } else { format!("{}{local}", self.prefix) }
    }

    /// Load a required tensor, check its HF shape, apply the row's transform.
    pub fn get<const D: usize>(&mut self, name: &str, layer: Option<usize>, shape: [usize; D]) -> Result<Tensor<D>> {
        self.get_as(name, layer, shape, self.dtype)
    }

    /// As [`Weights::get`], always f32 (norm weights, scalars).
    pub fn get_f32<const D: usize>(&mut self, name: &str, layer: Option<usize>, shape: [usize; D]) -> Result<Tensor<D>> {
        self.get_as(name, layer, shape, DType::F32)
    }

    /// Load a tensor only if the checkpoint has it.
    pub fn get_opt<const D: usize>(&mut self, name: &str, layer: Option<usize>, shape: [usize; D]) -> Result<Option<Tensor<D>>> {
        let full = self.full_name(name, layer);
        if self.ckpt.tensors.contains_key(&full) { self.get(name, layer, shape).map(Some) } else { Ok(None) }
    }

    fn get_as<const D: usize>(&mut self, name: &str, layer: Option<usize>, shape: [usize; D], dtype: DType) -> Result<Tensor<D>> {
        let row = table_row(name);
        let full = self.check(name, layer, &shape)?;
        let values = self.ckpt.to_f32(&full)?;
        // Transposes happen here on the host, so every weight is contiguous on the device: a
        // strided view would be copied by the backend on every matmul (measured ~20x slower).
        let (values, shape) = match row.transform {
            Transform::Keep | Transform::Host => (values, shape),
            Transform::Transpose | Transform::TransposeExperts => transpose_last_two(values, shape),
        };
        Ok(upload(values, shape, &self.device, dtype))
    }

    /// A tensor as device pieces cut along its first axis (vocabulary rows, experts), none
    /// above [`crate::pieces::piece_bytes`] in the weight dtype; each piece gets the row's transform (or,
    /// with `transpose`, its last two axes swapped: the head `[e, v_p]` from `[v_p, e]`, the
    /// tied `embed_tokens` read again). One piece when the whole tensor fits.
    pub fn get_pieces<const D: usize>(&mut self, name: &str, layer: Option<usize>, shape: [usize; D], transpose: bool) -> Result<Vec<Tensor<D>>> {
        let full = self.check(name, layer, &shape)?;
        let values = self.ckpt.to_f32(&full)?;
        let transpose = transpose || matches!(table_row(name).transform, Transform::Transpose | Transform::TransposeExperts);
        let width: usize = shape[1..].iter().product();
        let rows = rows_per_piece(width, self.dtype);
        let to_device = |chunk: Vec<f32>, piece: [usize; D]| {
            let (chunk, piece) = if transpose { transpose_last_two(chunk, piece) } else { (chunk, piece) };
            upload(chunk, piece, &self.device, self.dtype)
        };
        if rows >= shape[0] {
            return Ok(vec![to_device(values, shape)]); // one piece: no copy of the host values
        }
        let pieces = (0..shape[0])
            .step_by(rows)
            .map(|start| {
                let mut piece = shape;
                piece[0] = rows.min(shape[0] - start);
                to_device(values[start * width..(start + piece[0]) * width].to_vec(), piece)
            })
            .collect();
        Ok(pieces)
    }

    /// Mark a tensor used after checking its shape; returns its checkpoint name.
    pub fn check(&mut self, name: &str, layer: Option<usize>, shape: &[usize]) -> Result<String> {
        let full = self.full_name(name, layer);
        let info = self.ckpt.tensors.get(&full).ok_or_else(|| ModelError::MissingTensor { name: full.clone(), dir: self.ckpt.dir.clone() })?;
        if info.shape != shape {
            return Err(ModelError::Shape { name: full, expected: shape.to_vec(), found: info.shape.clone() });
        }
        self.used.insert(full.clone());
        Ok(full)
    }

    /// Every tensor must have been used or dropped by a rule.
    pub fn finish(self, cfg: &Gemma4TextConfig) -> Result<LoadReport> {
        let first_shared = cfg.first_kv_shared_layer();
        let shared_prefixes: Vec<String> = (first_shared..cfg.num_hidden_layers)
            .flat_map(|i| DROPPED_IN_SHARED_LAYERS.iter().map(move |m| format!("layers.{i}.{m}")))
            .map(|p| format!("{}{p}", self.prefix))
            .collect();
        let mut report = LoadReport { used: self.used.len(), dropped: Vec::new() };
        let mut unused = Vec::new();
        for name in self.ckpt.tensors.keys().filter(|n| !self.used.contains(*n)) {
            let dropped = DROPPED.iter().any(|p| name.starts_with(p))
                || shared_prefixes.iter().any(|p| name.starts_with(p.as_str()))
                || name.contains(".self_attn.rotary_emb.")
                || (cfg.tie_word_embeddings && name == "lm_head.weight"); // HF re-ties it to embed_tokens
            if dropped { report.dropped.push(name.clone()) } else { unused.push(name.clone()) }
        }
        if !unused.is_empty() {
            let count = unused.len();
            let mut names = unused.into_iter().take(8).collect::<Vec<_>>().join(", ");
            if count > 8 {
                names.push_str(", ...");
            }
            return Err(ModelError::UnusedTensors { dir: self.ckpt.dir.clone(), count, names });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transpose_equals_the_naive_one() {
        for (n, r, c) in [(1, 70, 45), (3, 33, 65), (2, 1, 97), (1, 64, 32)] {
            let values: Vec<f32> = (0..n * r * c).map(|i| i as f32).collect();
            let (got, shape) = transpose_last_two(values.clone(), [n, r, c]);
            assert_eq!(shape, [n, c, r]);
            for m in 0..n {
                for i in 0..r {
                    for j in 0..c {
                        assert_eq!(got[m * r * c + j * r + i], values[m * r * c + i * c + j], "[{n}, {r}, {c}] at ({m}, {i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn table_names_are_unique_and_transforms_match_kinds() {
        let mut seen = BTreeSet::new();
        for r in TABLE {
            assert!(seen.insert(r.name), "duplicate row {}", r.name);
            let linear = r.name.ends_with("_proj.weight") || r.name.ends_with("gate.weight") || r.name == "lm_head.weight";
            if linear && !r.name.starts_with("embed") {
                assert_eq!(r.transform, Transform::Transpose, "{}", r.name);
            }
            if r.name.contains("norm") || r.name.ends_with(".bias") || r.name.ends_with("scale") {
                assert_eq!(r.transform, Transform::Keep, "{}", r.name);
            }
        }
    }
}
