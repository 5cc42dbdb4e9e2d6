//! Checkpoints: `checkpoints/{step:07}/` = the adapter (PEFT files), the optimizer moments
//! (`optimizer.safetensors`: `m.<key>`, `v.<key>`) and `trainer_state.json` (step, data position,
//! best validation, recipe fingerprint). A snapshot is staged beside its final name and renamed
//! into place (gemma4-store's `StagedDir`), so it is complete or absent; only the last
//! `keep_last` are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use gemma4_lora::LoraAdapter;
use gemma4_model::Gemma4TextModel;
use gemma4_store::{F32Tensor, StagedDir};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::AdamW;

/// Where the loop stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Current epoch and the index of the next micro-batch in it.
    pub epoch: u64,
    pub batch_index: usize,
    pub trained_tokens: usize,
    pub best_val: Option<f64>,
    pub best_step: usize,
    pub evals_since_best: usize,
    /// Steps skipped for a non-finite loss or gradient (`skip_nonfinite`).
    #[serde(default)]
    pub skipped_steps: usize,
    /// The f16 loss scaler's state (absent before the first step, and in older checkpoints).
    #[serde(default)]
    pub loss_scale: Option<crate::optim::LossScale>,
    /// Hash of the recipe settings a resumed run must share.
    pub fingerprint: String,
}

fn err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_owned(), reason: reason.into() }
}

/// Save a snapshot for `state.step` under `root` and prune old ones. Returns its directory.
pub fn save(
    root: &Path,
    adapter: &LoraAdapter,
    opt: &AdamW,
    state: &TrainerState,
    keep_last: usize,
) -> Result<PathBuf> {
    let final_dir = root.join(format!("{:07}", state.step));
    // Half-written snapshots of a run killed while saving (never complete: never renamed).
    gemma4_store::recover(root);
    // A failed save (disk full, ...) leaves no partial snapshot behind; older snapshots stay.
    let stage = StagedDir::begin(&final_dir)?;
    gemma4_lora::peft_io::save_files(adapter, stage.path())?;
    write_optimizer(&stage.path().join("optimizer.safetensors"), opt)?;
    let json = serde_json::to_string_pretty(state).unwrap_or_default();
    gemma4_store::write_atomic(&stage.path().join("trainer_state.json"), json.as_bytes())?;
    stage.commit()?;
    prune(root, keep_last.max(1));
    Ok(final_dir)
}

/// The newest complete snapshot under `root`.
pub fn latest(root: &Path) -> Option<PathBuf> {
    snapshots(root).pop()
}

fn snapshots(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .map(|e| e.path())
        .filter(|p| p.join("trainer_state.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn prune(root: &Path, keep: usize) {
    let dirs = snapshots(root);
    for d in dirs.iter().take(dirs.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Load a snapshot: adapter (on the model's device), optimizer and state.
pub fn load(dir: &Path, model: &Gemma4TextModel) -> Result<(LoraAdapter, AdamW, TrainerState)> {
    let state_path = dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&state_path)
        .map_err(|source| TrainError::Io { path: state_path.clone(), source })?;
    let state = parse_state(&text, &state_path)?;
    let adapter = gemma4_lora::peft_io::load(dir, model)?;
    let opt_path = dir.join("optimizer.safetensors");
    let opt = read_optimizer(&opt_path, &adapter, &model.device, state.step as u64)?;
    Ok((adapter, opt, state))
}

/// Counters in a checkpoint's state are at most this (2^53, exact in JSON and f64): far above
/// any run, and far enough below `usize::MAX` that counting on never overflows.
pub const MAX_COUNT: u64 = 1 << 53;

/// `trainer_state.json` (read from `path`), its numbers checked: counters at most
/// [`MAX_COUNT`], `best_val` finite, the loss scaler's state in range. Errors name the file and
/// the key, so bad state is reported when loaded, not as an overflow or a non-finite loss later.
pub fn parse_state(text: &str, path: &Path) -> Result<TrainerState> {
    let state: TrainerState = serde_json::from_str(text).map_err(|e| err(path, e.to_string()))?;
    let counters = [
        ("step", state.step as u64),
        ("epoch", state.epoch),
        ("batch_index", state.batch_index as u64),
        ("trained_tokens", state.trained_tokens as u64),
        ("best_step", state.best_step as u64),
        ("evals_since_best", state.evals_since_best as u64),
        ("skipped_steps", state.skipped_steps as u64),
    ];
    if let Some((key, v)) = counters.iter().find(|(_, v)| *v > MAX_COUNT) {
        return Err(err(path, format!("`{key}` = {v} is past the limit {MAX_COUNT}")));
    }
    if let Some(v) = state.best_val.filter(|v| !v.is_finite()) {
        return Err(err(path, format!("`best_val` = {v} is not finite")));
    }
    if let Some(problem) = state.loss_scale.as_ref().and_then(crate::optim::LossScale::problem) {
        return Err(err(path, problem));
    }
    Ok(state)
}

fn write_optimizer(path: &Path, opt: &AdamW) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (prefix, map) in [("m", &opt.m), ("v", &opt.v)] {
        for (k, t) in map {
            let shape = t.dims().to_vec();
            let v = t
                .clone()
                .into_data()
                .try_to_vec_as::<f32>()
                .map_err(|e| err(path, format!("{k}: {e:?}")))?;
            tensors.push((format!("{prefix}.{k}"), shape, v));
        }
    }
    let views: Vec<F32Tensor> =
        tensors.iter().map(|(name, shape, values)| F32Tensor { name, shape, values }).collect();
    let step = opt.step.to_string();
    gemma4_store::write_f32(path, &views, &[("step", &step)])?;
    Ok(())
}

/// The optimizer moments of a checkpoint, each checked against the adapter it belongs to.
fn read_optimizer(path: &Path, adapter: &LoraAdapter, device: &Device, step: u64) -> Result<AdamW> {
    let bytes =
        std::fs::read(path).map_err(|source| TrainError::Io { path: path.to_owned(), source })?;
    let shapes: BTreeMap<String, Vec<usize>> =
        adapter.tensors().into_iter().map(|(k, t)| (k, t.dims().to_vec())).collect();
    let mut m = BTreeMap::new();
    let mut v = BTreeMap::new();
    for moment in parse_optimizer(&bytes, path, &shapes)? {
        let t = Tensor::<2>::from_data(TensorData::new(moment.values, moment.shape), device)
            .without_autodiff();
        let moments = if moment.second { &mut v } else { &mut m };
        moments.insert(moment.key, t);
    }
    Ok(AdamW { step, m, v })
}

/// One optimizer moment as stored: `m.<key>` or (`second`) `v.<key>`.
#[derive(Debug)]
pub struct Moment {
    pub key: String,
    pub second: bool,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The moments in `optimizer.safetensors` (`bytes`, read from `path`), checked against the
/// adapter tensors' `shapes`: F32, `m.<key>`/`v.<key>` of an adapter tensor of the same shape,
/// every value finite (and `v` ≥ 0), so that bad state is reported here, naming the tensor,
/// not later as a non-finite loss.
pub fn parse_optimizer(
    bytes: &[u8],
    path: &Path,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<Vec<Moment>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(path, e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let (second, key) = match name.split_once('.') {
            Some(("m", k)) => (false, k),
            Some(("v", k)) => (true, k),
            _ => return Err(err(path, format!("unexpected tensor {name}"))),
        };
        if shapes.get(key).is_none_or(|s| s[..] != *view.shape()) || view.dtype() != Dtype::F32 {
            return Err(err(
                path,
                format!(
                    "{name}: {:?} {:?} matches no adapter tensor (expected F32 {:?})",
                    view.dtype(),
                    view.shape(),
                    shapes.get(key)
                ),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = values.iter().position(|&x| !x.is_finite() || (second && x < 0.0)) {
            return Err(err(
                path,
                format!(
                    "optimizer state {name}: value {} at index {i} is not {}; the checkpoint is unusable (resume from an earlier one)",
                    values[i],
                    if second { "finite and >= 0" } else { "finite" }
                ),
            ));
        }
        out.push(Moment { key: key.to_owned(), second, shape: view.shape().to_vec(), values });
    }
    Ok(out)
}
