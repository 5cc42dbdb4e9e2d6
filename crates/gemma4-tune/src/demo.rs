//! The tiny built-in model used when no `--model` is given: the E2B-shaped reference fixture
//! (PLE, KV sharing, double-wide MLP, bf16 weights) with the token ids and the logits
//! transformers produced for it, so a fresh checkout can check the whole path in one command.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const CONFIG: &[u8] = include_bytes!("../../../tests/fixtures/e2b_like/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../../tests/fixtures/e2b_like/model.safetensors");
const GOLDEN: &[u8] = include_bytes!("../../../tests/fixtures/e2b_like/golden.safetensors");

/// The built-in model written to a temporary directory (removed on drop).
pub struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    pub fn write() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("gemma4-tune-demo")
            .tempdir()
            .context("creating a temporary directory")?;
        for (name, bytes) in [
            ("config.json", CONFIG),
            ("model.safetensors", WEIGHTS),
            ("golden.safetensors", GOLDEN),
        ] {
            std::fs::write(dir.path().join(name), bytes)
                .with_context(|| format!("writing {name} to {}", dir.path().display()))?;
        }
        Ok(Self { dir })
    }

    pub fn model_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Token ids plus the transformers reference logits for them.
    pub fn input(&self) -> PathBuf {
        self.dir.path().join("golden.safetensors")
    }
}
