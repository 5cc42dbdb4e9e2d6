//! `DataConfig`: the recipe's `[data]` table.
//!
//! Strict (`deny_unknown_fields`): a misspelt key is an error naming it, never a silent default.
//! Paths are resolved by the caller (relative to the recipe file) before they reach this crate.
//! The bounds of the table live here, once ([`DataConfig::validate`]): the recipe's resolution
//! calls it, and so do `load_split` and the `Batcher` for callers that skip the recipe.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::DataError;

/// The shortest `max_seq_len`: one token to predict from, one to predict.
pub const MIN_SEQ_LEN: usize = 2;

/// The `[data]` table of a recipe.
///
/// ```toml
/// [data]
/// train = "data/train.jsonl"   # one JSON object per line: {"messages"}, {"prompt","completion"} or {"text"}
/// valid = "data/valid.jsonl"
/// max_seq_len = 2048           # longer samples are truncated (and counted)
/// mask_prompt = true           # train on assistant turns / completions only
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training split (JSONL). Required.
    pub train: PathBuf,
    /// Validation split (JSONL). Default: none.
    #[serde(default)]
    pub valid: Option<PathBuf>,
    /// Test split (JSONL). Default: none.
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Samples longer than this many tokens are truncated (keeping the start) and counted.
    /// With packing, the length of one packed row. Default 2048 (mlx-lm, Unsloth, axolotl).
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Train only on assistant turns (chat) / the completion (prompt-completion); `text` records
    /// are always trained in full. Default true.
    #[serde(default = "default_true")]
    pub mask_prompt: bool,
    /// Pack several samples into each row of `max_seq_len` tokens (they never attend to each
    /// other; RoPE positions restart per sample). Default false.
    #[serde(default)]
    pub packing: bool,
    /// Key of plain-text records. Default `"text"`.
    #[serde(default = "default_text_key")]
    pub text_key: String,
    /// Key of the prompt in prompt-completion records. Default `"prompt"`.
    #[serde(default = "default_prompt_key")]
    pub prompt_key: String,
    /// Key of the completion in prompt-completion records. Default `"completion"`.
    #[serde(default = "default_completion_key")]
    pub completion_key: String,
    /// Key of the message list in chat records. Default `"messages"`.
    #[serde(default = "default_messages_key")]
    pub messages_key: String,
    /// Key of the tool (JSON-schema) list in chat records. Default `"tools"`.
    #[serde(default = "default_tools_key")]
    pub tools_key: String,
    /// Passed to the chat template as `enable_thinking` (Gemma 4: `<|think|>` in the system
    /// turn). Default false.
    #[serde(default)]
    pub enable_thinking: bool,
}

fn default_max_seq_len() -> usize {
    2048
}
fn default_true() -> bool {
    true
}
fn default_text_key() -> String {
    "text".into()
}
fn default_prompt_key() -> String {
    "prompt".into()
}
fn default_completion_key() -> String {
    "completion".into()
}
fn default_messages_key() -> String {
    "messages".into()
}
fn default_tools_key() -> String {
    "tools".into()
}

impl DataConfig {
    /// A config with every default and the given training split.
    pub fn new(train: impl Into<PathBuf>) -> Self {
        Self {
            train: train.into(),
            valid: None,
            test: None,
            max_seq_len: default_max_seq_len(),
            mask_prompt: true,
            packing: false,
            text_key: default_text_key(),
            prompt_key: default_prompt_key(),
            completion_key: default_completion_key(),
            messages_key: default_messages_key(),
            tools_key: default_tools_key(),
            enable_thinking: false,
        }
    }

    /// Check the table's bounds (today one: `max_seq_len` ≥ [`MIN_SEQ_LEN`]), naming the key.
    pub fn validate(&self) -> Result<(), DataError> {
        check_max_seq_len(self.max_seq_len)
    }
}

/// The `max_seq_len` rule, the one copy: at least [`MIN_SEQ_LEN`] tokens.
pub fn check_max_seq_len(max_seq_len: usize) -> Result<(), DataError> {
    if max_seq_len < MIN_SEQ_LEN {
        let need = format!("need at least {MIN_SEQ_LEN} tokens to predict anything");
        let message = format!("{max_seq_len} is too small ({need})");
        return Err(DataError::Config { field: "data.max_seq_len".into(), message });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_train_is_required_and_defaults_match_the_docs() {
        let cfg: DataConfig = serde_json::from_str(r#"{"train": "t.jsonl"}"#).unwrap();
        assert_eq!(cfg, DataConfig::new("t.jsonl"));
        assert_eq!(cfg.max_seq_len, 2048);
        assert!(cfg.mask_prompt && !cfg.packing && !cfg.enable_thinking);
    }

    #[test]
    fn max_seq_len_below_two_is_refused_naming_the_key() {
        for n in [0, 1] {
            let cfg = DataConfig { max_seq_len: n, ..DataConfig::new("t.jsonl") };
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("data.max_seq_len") && e.contains("at least 2"), "{e}");
        }
        assert!(DataConfig { max_seq_len: 2, ..DataConfig::new("t.jsonl") }.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = serde_json::from_str::<DataConfig>(r#"{"train": "t", "mask_promt": true}"#)
            .unwrap_err();
        assert!(err.to_string().contains("mask_promt"), "{err}");
    }
}
