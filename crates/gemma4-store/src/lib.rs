//! Durable writes for every output of gemma4-tune: a file or a directory is either complete or
//! absent, whatever happens while it is written (an error, a full disk, a SIGKILL).
//!
//! - [`atomic`]: one file through a temporary sibling and a rename ([`write_atomic`],
//!   [`AtomicFile`] for streaming).
//! - [`staged`]: a whole directory built beside its destination and renamed into place
//!   ([`StagedDir`]).
//! - [`recover`]: after a crash, removes the temporaries left in a directory and puts back a
//!   directory that was moved aside for a replacement that never arrived.
//! - [`guard`]: no output may be, or resolve to, a file the command reads
//!   ([`refuse_input_overwrite`]).
//! - [`safetensors`]: the one f32 safetensors writer ([`write_f32`]) and the streaming writer
//!   ([`StreamingWriter`]) used to fuse checkpoints larger than memory.
//!
//! Every temporary is named by `naming` (`.<name>.tmp-XXXXXX`, `.<name>.old-XXXXXX`), so
//! recovery recognises them and no other crate needs to know these names.
//!
//! Not here: what the files contain (PEFT adapters, checkpoints, fused models: their crates).
//! No Burn dependency: only `tempfile`, `safetensors` and `half`.

pub mod atomic;
pub mod error;
pub mod guard;
mod naming;
pub mod recover;
pub mod safetensors;
pub mod staged;
#[cfg(test)]
mod test_util;

pub use atomic::{AtomicFile, write_atomic, write_atomic_with};
pub use error::{Result, StoreError};
pub use guard::refuse_input_overwrite;
pub use naming::is_temporary;
pub use recover::recover;
pub use safetensors::{F32Tensor, StreamingWriter, TensorSpec, write_f32};
pub use staged::StagedDir;
