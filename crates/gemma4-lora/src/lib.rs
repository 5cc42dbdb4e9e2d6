//! LoRA adapters for the Gemma 4 model (PEFT-compatible): which projections to adapt, the
//! adapter math `x·Aᵀ·Bᵀ·scale` plugged into the model's one seam, PEFT files in and out.

pub mod config;
pub mod error;

pub use config::{LoraConfig, TargetModules};
pub use error::{LoraError, Result};
