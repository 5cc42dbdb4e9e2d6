//! Gemma 4 model output → thinking, answer and tool calls, and the inverse call renderer.
//!
//! The model writes (special tokens kept as their strings, see architecture doc §6.3):
//!
//! ```text
//! <|channel>thought\n{reasoning}<channel|>{answer}<|tool_call>call:NAME{key:value,…}<tool_call|><|tool_response>
//! ```
//!
//! [`parse_output`] splits that into [`ParsedOutput`] (`thinking`, `content`, `tool_calls`),
//! converts the call syntax (`<|"|>` strings, bare keys, literal numbers/booleans, nested
//! objects and arrays) to JSON, and never fails: a block that does not parse stays in `content`
//! and a warning says why. [`render_call`] is the exact inverse of the real template's assistant
//! `tool_calls` rendering (`format_argument(…, escape_keys=False)`, jinja2 `dictsort`, Python
//! `str()` of numbers and `None`), checked against jinja2 output in `tests/toolcall.rs`.
//!
//! Not here: streaming (this parses a finished generation), tool declarations, tool responses.
//! Reference: mlx-lm `tool_parsers/gemma4.py` (mlx-lm#1105, #1150 hyphens and braces in
//! strings); lessons rows 9–10 (raw calls left in `content`, calls after `<channel|>` dropped).

mod syntax;

use serde_json::{Map, Value, json};

use syntax::Cursor;

const CHANNEL_OPEN: &str = "<|channel>";
const CHANNEL_CLOSE: &str = "<channel|>";
const CALL_OPEN: &str = "<|tool_call>";
const CALL_CLOSE: &str = "<tool_call|>";
/// The string delimiter (`escape_token`); nothing inside a string is escaped.
const QUOTE: &str = "<|\"|>";
/// `generation_config.eos_token_id` of the -it checkpoints: `<eos>`, `<turn|>`, `<|tool_response>`.
const STOPS: [&str; 3] = ["<turn|>", "<eos>", "<|tool_response>"];
/// Deeper argument nesting is rejected, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

/// One generation, split into its parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOutput {
    /// The thought channel's text without its `thought\n` label; `None` when absent or empty.
    pub thinking: Option<String>,
    /// The answer: everything outside the thought channel and the parsed call blocks, trimmed.
    pub content: String,
    /// Parsed calls, in order of appearance.
    pub tool_calls: Vec<ToolCall>,
    /// What was repaired or kept as text, one sentence each (for stderr, not for the client).
    pub warnings: Vec<String>,
}

/// One `call:NAME{…}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The function name (`[\w.-]+`: hyphens and dots as tools are named in the wild).
    pub name: String,
    /// The arguments, always a JSON object.
    pub arguments: Value,
}

impl ToolCall {
    /// OpenAI `tool_calls[index]`: `{"id":"call_<index>","type":"function","function":{"name","arguments"}}`,
    /// with `arguments` as a JSON string, as the OpenAI API sends it.
    pub fn to_openai(&self, index: usize) -> Value {
        json!({
            "id": format!("call_{index}"),
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments.to_string()},
        })
    }
}

impl ParsedOutput {
    /// An OpenAI-style assistant message. `content` is `null` when empty and calls were made (as
    /// OpenAI does); `reasoning_content` is `null` without thinking; `tool_calls` is always an array.
    pub fn to_json(&self) -> Value {
        let content = if self.content.is_empty() && !self.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(self.content.clone())
        };
        let calls: Vec<Value> =
            self.tool_calls.iter().enumerate().map(|(i, c)| c.to_openai(i)).collect();
        json!({"role": "assistant", "content": content, "reasoning_content": self.thinking, "tool_calls": calls})
    }
}

/// Splits decoded model output into thinking, answer and tool calls. Never panics, never fails.
///
/// Trailing stop tokens are dropped first. An unterminated thought channel makes the rest
/// thinking; a `<channel|>` with no opening (a prompt that ended inside the channel) makes the
/// text before it thinking; several channels are joined with a newline. Each warning names its
/// problem.
pub fn parse_output(text: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    let mut thoughts: Vec<&str> = Vec::new();
    let mut content = String::new();
    let mut rest = strip_stops(text);
    if let Some(close) = rest.find(CHANNEL_CLOSE) {
        let before = &rest[..close];
        if !before.contains(CHANNEL_OPEN) && !before.contains(CALL_OPEN) {
            out.warnings.push(
                "`<channel|>` without `<|channel>`: the text before it is taken as thinking".into(),
            );
            thoughts.push(before.strip_prefix("thought\n").unwrap_or(before));
            rest = &rest[close + CHANNEL_CLOSE.len()..];
        }
    }
    loop {
        let channel = rest.find(CHANNEL_OPEN);
        let call = rest.find(CALL_OPEN);
        match (channel, call) {
            (Some(at), c) if c.is_none_or(|c| at < c) => {
                content.push_str(&rest[..at]);
                let body = &rest[at + CHANNEL_OPEN.len()..];
                let (thought, after) = match body.find(CHANNEL_CLOSE) {
                    Some(end) => (&body[..end], &body[end + CHANNEL_CLOSE.len()..]),
                    None => {
                        out.warnings.push(
                            "unterminated thought channel (no `<channel|>`): all of it is thinking"
                                .into(),
                        );
                        (body, "")
                    }
                };
                thoughts.push(strip_label(thought, &mut out.warnings));
                rest = after;
            }
            (_, Some(at)) => {
                content.push_str(&rest[..at]);
                rest = call_block(&rest[at..], &mut out, &mut content);
            }
            _ => {
                content.push_str(rest);
                break;
            }
        }
    }
    thoughts.retain(|t| !t.is_empty());
    out.thinking = (!thoughts.is_empty()).then(|| thoughts.join("\n"));
    out.content = content.trim().to_string();
    out
}

/// Renders one call exactly as the real template renders an assistant `tool_calls` entry, so
/// `parse_output(&render_call(n, a))` gives back `(n, a)` for every object `a` whose strings
/// hold no `<|"|>` and whose keys are free of `:{}[],`, `<|"|>` and outer whitespace. As in the
/// template, a string `arguments` is pasted raw between the braces and anything else renders `{}`.
pub fn render_call(name: &str, arguments: &Value) -> String {
    let body = match arguments {
        Value::Object(map) => render_pairs(map),
        Value::String(raw) => raw.clone(),
        _ => String::new(),
    };
    format!("{CALL_OPEN}call:{name}{{{body}}}{CALL_CLOSE}")
}

/// `key:value,…` in jinja2 `dictsort` order: case-insensitive, ties kept in map order.
fn render_pairs(map: &Map<String, Value>) -> String {
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by_cached_key(|(k, _)| k.to_lowercase());
    pairs.iter().map(|(k, v)| format!("{k}:{}", render_value(v))).collect::<Vec<_>>().join(",")
}

/// The template's `format_argument(value, escape_keys=False)`; scalars print as Python's `str()`.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{QUOTE}{s}{QUOTE}"),
        Value::Bool(b) => b.to_string(),
        Value::Null => "None".into(),
        Value::Number(n) if n.is_f64() => python_float(n.as_f64().unwrap_or_default()),
        Value::Number(n) => n.to_string(),
        Value::Object(map) => format!("{{{}}}", render_pairs(map)),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(render_value).collect::<Vec<_>>().join(","))
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, positional for exponents -4..16, else
/// `1.5e-07`/`1e+16` (CPython `float_repr_style='short'`).
fn python_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = f.to_string();
        if fixed.contains('.') { fixed } else { fixed + ".0" }
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
    }
}

/// Drops trailing stop tokens (and whitespace between them); text without one is untouched.
fn strip_stops(mut text: &str) -> &str {
    while let Some(stripped) = STOPS.iter().find_map(|s| text.trim_end().strip_suffix(s)) {
        text = stripped;
    }
    text
}

/// `thought\n…` → `…` (a bare `thought` is empty); another label is kept whole, with a warning.
fn strip_label<'a>(body: &'a str, warnings: &mut Vec<String>) -> &'a str {
    if let Some(rest) = body.strip_prefix("thought\n") {
        return rest;
    }
    if body == "thought" {
        return "";
    }
    if !body.is_empty() {
        warnings.push("thought channel without the `thought` label: kept whole as thinking".into());
    }
    body
}

/// Parses the block at the start of `text` (which starts with `<|tool_call>`); returns the text
/// after it. All its calls are taken, or the whole block goes to `content` with a warning.
fn call_block<'a>(text: &'a str, out: &mut ParsedOutput, content: &mut String) -> &'a str {
    let mut cur = Cursor { s: text, i: CALL_OPEN.len(), depth: 0 };
    match cur.calls() {
        Ok(calls) => {
            out.tool_calls.extend(calls);
            &text[cur.i..]
        }
        Err(problem) => {
            // The text block runs to the first `<tool_call|>` after the opening, or to the end.
            let end = text[CALL_OPEN.len()..]
                .find(CALL_CLOSE)
                .map_or(text.len(), |e| e + CALL_OPEN.len() + CALL_CLOSE.len());
            out.warnings.push(format!(
                "malformed tool call kept as text: {} (byte {} of `{}`)",
                problem.what,
                problem.at,
                excerpt(&text[..end])
            ));
            content.push_str(&text[..end]);
            &text[end..]
        }
    }
}

/// At most 60 characters of `s`, for warnings.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}
