//! LoRA adapters for the Gemma 4 model (PEFT-compatible): which projections to adapt
//! (`target`), the adapter math `x·Aᵀ·Bᵀ·scale` plugged into the model's one seam (`adapter`),
//! PEFT files in and out (`peft_io`), fusing an adapter into a new checkpoint (`fuse`, written
//! through gemma4-store's streaming safetensors writer, or as one GGUF file: `fuse::gguf`), and
//! an adapter as a llama.cpp LoRA GGUF (`gguf_adapter`). The model crate knows nothing of any of
//! this; how files are written durably is gemma4-store's.

pub mod adapter;
pub mod config;
pub mod error;
pub mod fuse;
pub mod gguf_adapter;
pub mod layout;
pub mod peft_io;
pub mod target;

pub use adapter::{LoraAdapter, LoraModule, ModuleSite};
pub use config::{InvalidLoraConfig, LoraConfig, TargetModules};
pub use error::{LoraError, Result};
pub use fuse::{FuseOptions, FuseReport, fuse};
pub use target::{init_adapter, select};
