//! The Gemma 4 text decoder in Burn: config, weights, forward pass.
//!
//! Mirrors HF transformers `models/gemma4/modeling_gemma4.py` (5.24) and the spec in
//! `shared/docs/gemma4-architecture.md`. Holds no LoRA, training or CLI code: adapters plug in
//! through [`Adapter`], the one seam.
//!
//! Layout. Every module is private; what other crates use is exported here, at the root.
//! - Checkpoints, model-independent: `source` (which kind a model path holds: safetensors, GGUF
//!   or random), `checkpoint` (tensors by HF name, decoded on demand), `random` (computed
//!   weights), and `formats/` (GGUF, its quantised block types, Gemma 3 configs).
//! - The model, in forward-pass order: `config` → `load`/`weights` (the weight table; `pieces`
//!   cuts large tensors to the device's buffers) → `norm` → `rope` → `mask` → `linear` →
//!   `attention` → `mlp` → `moe` → `ple` → `layer` → `model`/`forward` (with `vocab`, `cache`);
//!   `params` counts parameters from the config.
//!
//! One decoder layer (see `layer.rs` for the full diagram):
//! ```text
//! h → norm → attn → norm → +h → norm → mlp (+ MoE) → norm → +h → [PLE gate] → ×layer_scalar
//! ```

mod attention;
mod cache;
mod checkpoint;
mod config;
mod dtype;
mod error;
mod formats;
mod forward;
mod layer;
mod linear;
mod load;
mod mask;
mod mlp;
mod model;
mod moe;
mod norm;
mod params;
mod pieces;
mod ple;
mod random;
mod rope;
mod source;
mod vocab;
mod weights;

pub use attention::{AttnMask, blocks_queries, mask_bias, scaled_dot_product, windowed};
pub use cache::KvCache;
pub use checkpoint::{Checkpoint, INDEX_FILE, SINGLE_FILE, TensorInfo};
pub use config::{Gemma4TextConfig, LayerSpec, LayerType, LoadedConfig, RopeConfig};
pub use dtype::{UnknownDtype, WeightDtype};
pub use error::{ModelError, Result};
pub use formats::gguf::{GgufHeader, GgufTensor, MetaValue};
pub use formats::gguf_out;
pub use formats::quant::{GgmlType, dequantize};
pub use forward::Prologue;
pub use layer::MoeBlock;
pub use linear::{Adapter, Linear, NoAdapter, ProjName, Site};
pub use load::LoadOptions;
pub use mask::{MaskSpec, RowMasks, build_mask};
pub use mlp::Mlp;
pub use model::{Gemma4TextModel, Outputs, Projection, TokenBatch, causal_lm_loss};
pub use params::ParamCounts;
pub use pieces::{MAX_PIECE_BYTES, piece_limit};
pub use ple::PleRows;
pub use random::RandomInit;
pub use source::CheckpointSource;
pub use weights::{LoadReport, classify, expected_tensors};
