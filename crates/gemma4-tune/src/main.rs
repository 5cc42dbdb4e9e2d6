//! `gemma4-tune`: fine-tune Gemma 4 with LoRA. A thin CLI: parse arguments, call the libraries.
//!
//! Exit codes: 0 success, 1 any error (printed with its full context chain), 2 bad arguments.

// gemma4-kernels' cuBLAS route implements Burn's extension for the plain CubeCL backend, which
// Burn's `fusion` replaces with `Fusion<CubeBackend>`.
#[cfg(all(feature = "cuda", feature = "fusion"))]
compile_error!("the `cuda` and `fusion` features cannot be combined (see Cargo.toml)");

mod backend;
mod cmd;
mod demo;
mod io;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fine-tune Google's Gemma 4 language models with LoRA.
#[derive(Parser, Debug)]
#[command(name = "gemma4-tune", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a checkpoint on token ids and write its logits and loss (checks a checkpoint against a reference).
    Logits(cmd::logits::Args),
    /// Train a LoRA adapter as a recipe says (the main job).
    Train(cmd::train::Args),
    /// Validation/test loss and perplexity of the base model or an adapter.
    Eval(cmd::eval::Args),
    /// Generate text (one prompt, or an interactive chat) with the model and an optional adapter.
    Generate(cmd::generate::Args),
    /// Merge a LoRA adapter into the base weights: a checkpoint transformers loads as-is, or (--gguf) a GGUF file for llama.cpp.
    Fuse(cmd::fuse::Args),
    /// Write a trained adapter as a llama.cpp LoRA GGUF for its base (--lora).
    ExportAdapter(cmd::export_adapter::Args),
    /// Dataset statistics and rendered samples with the trained spans marked.
    Data(cmd::data::Args),
    /// Print a checkpoint's resolved config: layer types, head dims, KV heads and donors, PLE/MoE, parameter counts.
    Inspect(cmd::inspect::Args),
    /// Time training steps, prefill and decode on a random-weight model of a preset's real shape.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    progress::install();
    let result = match cli.command {
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Data(args) => cmd::data::run(args),
        Command::Fuse(args) => cmd::fuse::run(args),
        Command::ExportAdapter(args) => cmd::export_adapter::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Logits(args) => cmd::logits::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Bench(args) => cmd::bench::run_cmd(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::from(1)
        }
    }
}

/// The context chain as one line, `outer: inner: cause` (as `{:#}` prints it), minus causes the
/// line already ends with: our error types put the OS error in their own message too.
fn message(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        if !line.ends_with(&cause) {
            line += if line.is_empty() { "" } else { ": " };
            line += &cause;
        }
    }
    line
}
