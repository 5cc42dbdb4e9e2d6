//! The training engine: recipes, AdamW on the adapter, LR schedules, chunked cross-entropy, the
//! loop, validation, checkpoints and metrics. Files in the order a run uses them:
//! `recipe` → `plan` (the memory plan; resolves `auto`) → `run_dir` → `setup` (+ `tiny`) → `start` → `train` (the loop: `stream`,
//! `schedule`, `trainer` with `step`/`recompute`, `loss`, `optim`; `report`) → `eval` →
//! `checkpoint` → `metrics` (+ `tensorboard`).

pub mod checkpoint;
pub mod error;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod plan;
pub mod recipe;
pub mod recompute;
pub mod report;
pub mod run_dir;
pub mod schedule;
pub mod setup;
pub mod start;
pub mod step;
pub mod stream;
pub mod tensorboard;
pub mod tiny;
pub mod train;
pub mod trainer;

pub use error::{Result, TrainError};
pub use recipe::Recipe;
pub use train::{Summary, train, train_until};
pub use trainer::{StepOutcome, StepSettings, Trainer};
