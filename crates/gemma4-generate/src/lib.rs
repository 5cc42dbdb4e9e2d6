//! Text generation for Gemma 4: a sampler, prefill + decode through the model's KV cache with
//! stop tokens, and `generation_config.json` defaults. Used by `generate`/`chat` and fuse checks.

pub mod config;
pub mod decode;
pub mod generate;
pub mod sampler;

pub use config::GenerationConfig;
pub use decode::{Decoder, logits_f32};
pub use generate::{GenerateOptions, Generation, StopReason, generate};
pub use sampler::{Sampler, SamplingConfig};
