//! # gemma4-data
//!
//! JSONL → chat template → tokens → loss masks → batches, for fine-tuning Gemma 4. Pure CPU:
//! no Burn, no model; the trainer turns [`Batch`]es into tensors.
//!
//! ```text
//! train.jsonl ─ record.rs ─▶ Record ─ template.rs ─▶ text ─ tokenize.rs ─▶ ids + offsets
//!   (one JSON     (validated,      (minijinja, the     (tokenizers,       │
//!    per line)     file:line)       checkpoint's own)   tokenizer.json)   ▼
//!                                                           mask.rs: trained byte spans → target
//!                                                                         │
//!                          split.rs: load_split (rayon) ─▶ Split { samples, stats }
//!                                                                         │
//!                          batch.rs: Batcher::epoch(epoch, seed) ─▶ Vec<Batch>
//! ```
//!
//! What it owns: record formats and their validation ([`record`]), rendering with the
//! checkpoint's Jinja chat template exactly as transformers' `apply_chat_template` does
//! ([`template`], goldens in `tests/chat_goldens.rs`), prompt masking from token spans
//! ([`mask`]), truncation, statistics, length-grouped / packed batches with a seeded shuffle
//! ([`batch`]), a tiny Gemma-shaped tokenizer for tests and the quickstart ([`tiny`]), and the
//! parser of model output into thinking, answer and tool calls ([`toolcall`]).
//!
//! What it does not: tensors, loss, the model, file-path resolution (the recipe layer resolves
//! paths relative to the recipe before they get here).
//!
//! Reference behaviour: transformers 5.24 `apply_chat_template` (rendering), mlx-lm `tuner/datasets.py`
//! (record formats, `mask_prompt`) with its mlx-lm#1355 bug fixed (Gemma 4's generation prompt is not a
//! prefix of the conversation).

mod align;
pub mod batch;
pub mod config;
pub mod error;
mod jinja_compat;
pub mod mask;
pub mod record;
pub mod show;
pub mod split;
pub mod stats;
pub mod template;
pub mod tiny;
pub mod tokenize;
pub mod toolcall;

pub use batch::{Batch, Batcher};
pub use config::DataConfig;
pub use error::{DataError, Location};
pub use record::{Record, Role, parse_record};
pub use show::show_sample;
pub use split::{Sample, Split, encode_record, load_split};
pub use stats::{SplitStats, format_stats};
pub use template::ChatTemplate;
pub use tiny::{tiny_tokenizer, tiny_tokenizer_json};
pub use tokenize::{Encoding, Tokenizer};
pub use toolcall::{ParsedOutput, ToolCall, parse_output, render_call};
