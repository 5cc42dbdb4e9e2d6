//! One file per subcommand: resolve arguments, call one library function, report.

pub mod inspect;
pub mod logits;
