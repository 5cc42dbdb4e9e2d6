//! The training engine: recipes, AdamW on the adapter, LR schedules, chunked cross-entropy, the
//! loop, validation, checkpoints and metrics. Files in the order a run uses them:
//! `recipe` → `setup` (+ `tiny`) → `train` (`loss`, `optim`, `schedule`) → `eval` →
//! `checkpoint` → `metrics`.

pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod recipe;
pub mod recompute;
pub mod schedule;
pub mod setup;
pub mod step;
pub mod tiny;
pub mod train;

pub use error::{Result, TrainError};
pub use recipe::Recipe;
pub use train::{Summary, train, train_until};
