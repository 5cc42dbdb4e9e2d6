//! The Gemma 4 text decoder in Burn: config, weights, forward pass.
//!
//! Mirrors HF transformers `models/gemma4/modeling_gemma4.py` (5.24) and the spec in
//! `shared/docs/gemma4-architecture.md`. Holds no LoRA, training or CLI code: adapters plug in
//! through [`linear::Adapter`], the one seam. Files follow the forward pass:
//! `config` → `checkpoint`/`weights` → `norm` → `rope` → `mask` → `linear` → `attention` →
//! `mlp` → `moe` → `ple` → `layer` → `model`.
//!
//! One decoder layer (see `layer.rs` for the full diagram):
//! ```text
//! h → norm → attn → norm → +h → norm → mlp (+ MoE) → norm → +h → [PLE gate] → ×layer_scalar
//! ```

pub mod attention;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod forward;
pub mod gguf;
pub mod layer;
pub mod linear;
pub mod mask;
pub mod mlp;
pub mod model;
pub mod moe;
pub mod norm;
pub mod params;
pub mod pieces;
pub mod ple;
pub mod quant;
pub mod random;
pub mod rope;
pub mod vocab;
pub mod weights;

pub use attention::{scaled_dot_product, windowed};
pub use cache::KvCache;
pub use forward::Prologue;
pub use checkpoint::Checkpoint;
pub use config::{Gemma4TextConfig, LayerSpec, LayerType, LoadedConfig};
pub use error::{ModelError, Result};
pub use linear::{Adapter, NoAdapter, ProjName, Site};
pub use mask::{MaskSpec, RowMasks, build_mask};
pub use model::{Gemma4TextModel, Outputs, Projection, TokenBatch, causal_lm_loss};
pub use params::ParamCounts;
pub use random::RandomInit;
pub use weights::LoadReport;
