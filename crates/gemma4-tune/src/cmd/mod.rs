//! One file per subcommand: resolve arguments, call one library function, report.

pub mod bench;
pub mod data;
pub mod eval;
pub mod export_adapter;
pub mod fuse;
mod fuse_gguf;
pub mod generate;
pub mod inspect;
pub mod logits;
pub mod train;
