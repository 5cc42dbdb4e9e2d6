//! Checkpoint formats beside Hugging Face's safetensors + `config.json` (which `checkpoint` and
//! `config` read): llama.cpp's GGUF files and their quantised block types, and Gemma 3 configs,
//! which resolve onto the same [`Gemma4TextConfig`](crate::Gemma4TextConfig) the model is built
//! from. Each format ends at the model's boundary: tensors under their HF names (served by
//! [`Checkpoint`](crate::Checkpoint)) and a resolved config; nothing past it knows the format.
//!
//! - `gguf.rs`: GGUF v2/v3 header, metadata, tensor table; llama.cpp → HF names; the config the
//!   metadata describes.
//! - `gguf_out/`: the other way: a resolved config and HF names → llama.cpp's metadata,
//!   tensor names and block types (what a GGUF export writes; refusals before writing).
//! - `quant.rs`: ggml tensor types and their dequantisation to f32.
//! - `gemma3.rs`: `gemma3_text` / `gemma3` configs resolved as Gemma 4 switched by values.

pub(crate) mod gemma3;
pub(crate) mod gguf;
pub mod gguf_out;
pub(crate) mod quant;
