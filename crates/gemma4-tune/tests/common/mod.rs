//! Helpers shared by the CLI integration tests: the binary, repository paths, running it.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

pub mod bad;

/// The `gemma4-tune` binary under test, on the CPU backend unless a test passes `--backend`
/// (`GEMMA4_TUNE_BACKEND=cpu`): the assertions hold on every machine, a GPU's too.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"));
    cmd.env("GEMMA4_TUNE_BACKEND", "cpu");
    cmd
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Run to completion: the output with stdout and stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run gemma4-tune");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}
