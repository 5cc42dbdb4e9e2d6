//! Checkpoints: `checkpoints/{step:07}/` = the adapter (PEFT files), the optimizer moments
//! (`optimizer.safetensors`: `m.<key>`, `v.<key>`) and `trainer_state.json` (step, data position,
//! best validation, recipe fingerprint). A snapshot is written into a temporary directory and
//! renamed into place, so it is complete or absent; only the last `keep_last` are kept.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use gemma4_lora::LoraAdapter;
use gemma4_model::Gemma4TextModel;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
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
pub fn save(root: &Path, adapter: &LoraAdapter, opt: &AdamW, state: &TrainerState, keep_last: usize) -> Result<PathBuf> {
    let final_dir = root.join(format!("{:07}", state.step));
    let tmp = root.join(format!(".tmp-{:07}-{}", state.step, std::process::id()));
    remove_stale_temporaries(root);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&tmp).map_err(|source| TrainError::Io { path: tmp.clone(), source })?;
        gemma4_lora::peft_io::save_files(adapter, &tmp)?;
        write_optimizer(&tmp.join("optimizer.safetensors"), opt)?;
        let json = serde_json::to_string_pretty(state).unwrap_or_default();
        gemma4_lora::peft_io::write_atomic(&tmp.join("trainer_state.json"), json.as_bytes())?;
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::rename(&tmp, &final_dir).map_err(|source| TrainError::Io { path: final_dir.clone(), source })
    };
    // A failed save (disk full, ...) leaves no partial snapshot behind; older snapshots stay.
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    prune(root, keep_last.max(1));
    Ok(final_dir)
}

/// Half-written snapshots of a run that was killed while saving (never complete: never renamed).
fn remove_stale_temporaries(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().filter_map(|e| e.ok()) {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Leftovers in `dir` of a run killed while writing (`peft_io::save`, `write_atomic`):
/// `.X.tmp-<pid>` are removed; `.X.old-<pid>` (the previous `X`, moved aside just before the new
/// one is renamed in) is put back if `X` is missing, else removed.
pub fn recover_interrupted_writes(dir: &Path) {
    let pid_suffix = |s: &str, tag: &str| s.rsplit_once(tag).filter(|(_, pid)| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())).map(|(x, _)| x.to_owned());
    for e in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok()) {
        let (name, path) = (e.file_name().to_string_lossy().into_owned(), e.path());
        let Some(rest) = name.strip_prefix('.') else { continue };
        if let Some(target) = pid_suffix(rest, ".old-") {
            if !dir.join(&target).exists() && std::fs::rename(&path, dir.join(&target)).is_ok() {
                continue;
            }
        } else if pid_suffix(rest, ".tmp-").is_none() {
            continue;
        }
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
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
    let text = std::fs::read_to_string(&state_path).map_err(|source| TrainError::Io { path: state_path.clone(), source })?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| err(&state_path, e.to_string()))?;
    let adapter = gemma4_lora::peft_io::load(dir, model)?;
    let opt = read_optimizer(&dir.join("optimizer.safetensors"), model, state.step as u64)?;
    Ok((adapter, opt, state))
}

fn write_optimizer(path: &Path, opt: &AdamW) -> Result<()> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, map) in [("m", &opt.m), ("v", &opt.v)] {
        for (k, t) in map {
            let shape = t.dims().to_vec();
            let v = t.clone().into_data().try_to_vec_as::<f32>().map_err(|e| err(path, format!("{k}: {e:?}")))?;
            bufs.push((format!("{prefix}.{k}"), shape, v.iter().flat_map(|x| x.to_le_bytes()).collect()));
        }
    }
    let views: HashMap<String, TensorView> = bufs
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(path, e.to_string()))?;
    let meta = Some(HashMap::from([("step".to_string(), opt.step.to_string())]));
    let bytes = safetensors::serialize(views, meta).map_err(|e| err(path, e.to_string()))?;
    gemma4_lora::peft_io::write_atomic(path, &bytes)?;
    Ok(())
}

fn read_optimizer(path: &Path, model: &Gemma4TextModel, step: u64) -> Result<AdamW> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io { path: path.to_owned(), source })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| err(path, e.to_string()))?;
    let mut m = BTreeMap::new();
    let mut v = BTreeMap::new();
    for (name, view) in st.tensors() {
        let values: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let [a, b] = view.shape()[..] else { return Err(err(path, format!("{name}: expected 2 dims"))) };
        let t = Tensor::<2>::from_data(TensorData::new(values, [a, b]), &model.device).without_autodiff();
        match name.split_once('.') {
            Some(("m", k)) => m.insert(k.to_owned(), t),
            Some(("v", k)) => v.insert(k.to_owned(), t),
            _ => return Err(err(path, format!("unexpected tensor {name}"))),
        };
    }
    Ok(AdamW { step, m, v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_a_killed_save_are_removed_and_a_moved_aside_adapter_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Killed between the two renames of `peft_io::save`: `best` moved aside, new one complete.
        std::fs::create_dir(d.join(".best.old-41")).unwrap();
        std::fs::write(d.join(".best.old-41/adapter_config.json"), "old").unwrap();
        std::fs::create_dir(d.join(".best.tmp-41")).unwrap();
        // Killed after the second rename: the old `adapter` is still aside.
        std::fs::create_dir(d.join("adapter")).unwrap();
        std::fs::create_dir(d.join(".adapter.old-7")).unwrap();
        std::fs::write(d.join(".metrics.jsonl.tmp-7"), "partial").unwrap();
        std::fs::write(d.join(".notes.tmp-mine"), "not ours: no pid").unwrap();
        recover_interrupted_writes(d);
        let mut names: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [".notes.tmp-mine", "adapter", "best"]);
        assert_eq!(std::fs::read_to_string(d.join("best/adapter_config.json")).unwrap(), "old");
    }
}
