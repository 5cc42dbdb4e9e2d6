//! `DataError`: the one error type of this crate.
//!
//! Every error about a record names `file:line` and, where it is about one field, the field path
//! (`messages[2].role`), in the form users know from compilers:
//!
//! ```text
//! data/train.jsonl:17: field `messages[2].role`: unknown role "narrator" (expected system, …)
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a record lives: a JSONL file and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The JSONL file, as the caller named it.
    pub path: PathBuf,
    /// 1-based line number in that file.
    pub line: usize,
}

impl Location {
    /// A location in `path` at 1-based `line`.
    pub fn new(path: &Path, line: usize) -> Self {
        Self { path: path.to_path_buf(), line }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Everything that can go wrong between a JSONL file and a batch.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read (missing, a directory, no permission, not UTF-8…).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The file has no records (empty or only blank lines).
    #[error("{}: no records (the file is empty or has only blank lines)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// A line is not valid JSON.
    #[error("{at}: malformed JSON: {message}")]
    Json {
        /// File and line.
        at: Location,
        /// serde_json's message (with the column).
        message: String,
    },

    /// Valid JSON, wrong shape: a line that is not an object, a field of the wrong type.
    #[error("{at}: field `{field}`: {message}")]
    Shape {
        /// File and line.
        at: Location,
        /// The field path, e.g. `messages[1].content`; `<line>` for the whole line.
        field: String,
        /// What was expected and what was found.
        message: String,
    },

    /// An object with none of the keys that select a record format.
    #[error(
        "{at}: unknown record format: keys [{found}] (expected {expected}; \
         hint: rename them in [data] text_key / prompt_key / completion_key / messages_key)"
    )]
    UnknownFormat {
        /// File and line.
        at: Location,
        /// The keys the line has, comma separated.
        found: String,
        /// The configured keys, e.g. `` `text`, `prompt` + `completion`, or `messages` ``.
        expected: String,
    },

    /// A required field is absent or null.
    #[error("{at}: field `{field}`: missing")]
    Missing {
        /// File and line.
        at: Location,
        /// The field path.
        field: String,
    },

    /// A field that must carry something is empty (`""`, `[]`).
    #[error("{at}: field `{field}`: empty")]
    EmptyField {
        /// File and line.
        at: Location,
        /// The field path.
        field: String,
    },

    /// A message role outside the supported set.
    #[error(
        "{at}: field `{field}`: unknown role \"{role}\" (expected system, developer, user, assistant, model, tool)"
    )]
    UnknownRole {
        /// File and line.
        at: Location,
        /// The field path, e.g. `messages[2].role`.
        field: String,
        /// The role found.
        role: String,
    },

    /// A chat record (`messages`) but no chat template to render it.
    #[error(
        "{at}: chat record (`{field}`) but no chat template (hint: the model directory has neither \
         chat_template.jinja nor a chat_template in tokenizer_config.json; use the built-in Gemma 4 template)"
    )]
    NoTemplate {
        /// File and line.
        at: Location,
        /// The messages key.
        field: String,
    },

    /// The chat template failed on a record.
    #[error("{at}: chat template {template}: {message}")]
    Render {
        /// File and line.
        at: Location,
        /// Where the template came from.
        template: String,
        /// minijinja's message.
        message: String,
    },

    /// A template could not be loaded, compiled or rendered (outside any record).
    #[error("chat template {origin}: {message}")]
    Template {
        /// Where the template came from (a file path, or `built-in`).
        origin: String,
        /// What went wrong.
        message: String,
    },

    /// A tokenizer could not be loaded, or failed to encode/decode.
    #[error("tokenizer {origin}: {message}")]
    Tokenizer {
        /// Where the tokenizer came from (a file path, or `tiny`).
        origin: String,
        /// What went wrong.
        message: String,
    },

    /// A setting is out of range (batch size 0, max_seq_len 0, …).
    #[error("invalid setting `{field}`: {message}")]
    Config {
        /// The setting, e.g. `data.max_seq_len`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_role_names_file_line_field_and_choices() {
        let e = DataError::UnknownRole {
            at: Location::new(Path::new("data/train.jsonl"), 17),
            field: "messages[2].role".into(),
            role: "narrator".into(),
        };
        assert_eq!(
            e.to_string(),
            "data/train.jsonl:17: field `messages[2].role`: unknown role \"narrator\" \
             (expected system, developer, user, assistant, model, tool)"
        );
    }
}
