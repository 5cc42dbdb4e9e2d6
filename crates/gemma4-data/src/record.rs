//! JSONL records: one JSON object per line, validated into a typed [`Record`].
//!
//! The format is chosen per line by key (names configurable in `[data]`), first match wins:
//!
//! | key | record | trained (with `mask_prompt`) |
//! |---|---|---|
//! | `messages` (+ `tools`) | [`Record::Chat`] | the assistant turns |
//! | `prompt` + `completion` | [`Record::PromptCompletion`] | the completion |
//! | `text` | [`Record::Text`] | everything |
//!
//! Chat messages follow the de-facto standard (OpenAI / HF chat templates): roles `system`,
//! `developer`, `user`, `assistant` (or Gemma's `model`), `tool`; `content` a string or a list of
//! `{"type": "text", "text": …}` parts; assistant `tool_calls` as
//! `[{"type": "function", "function": {"name": …, "arguments": …}}]` with `arguments` a JSON
//! object or a JSON *string* of one; Gemma-native `tool_responses` (`[{"name", "response"}]`) and
//! `reasoning_content` / `reasoning` / `thinking` are passed through to the template.
//!
//! The one normalisation done here: string `arguments` are parsed into objects, because the
//! Gemma 4 template formats only objects (`call:f{key:value}`) and would paste raw JSON text
//! between the braces. Everything else reaches the template as written.

use crate::config::DataConfig;
use crate::error::{DataError, Location};
use serde_json::{Map, Value};

/// A message role. `assistant` and `model` are the same speaker (Gemma renders both as `model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system`
    System,
    /// `developer` (rendered as a system turn by Gemma 4)
    Developer,
    /// `user`
    User,
    /// `assistant`
    Assistant,
    /// `model` (Gemma's name for the assistant)
    Model,
    /// `tool` (a tool result, OpenAI style)
    Tool,
}

impl Role {
    /// Parses a role name; `None` for anything outside the supported set.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "system" => Self::System,
            "developer" => Self::Developer,
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "model" => Self::Model,
            "tool" => Self::Tool,
            _ => return None,
        })
    }

    /// True for the speaker whose turns are trained: `assistant` / `model`.
    pub fn is_assistant(self) -> bool {
        matches!(self, Self::Assistant | Self::Model)
    }
}

/// One validated JSONL line.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `{"text": …}`: trained in full.
    Text {
        /// The text.
        text: String,
    },
    /// `{"prompt": …, "completion": …}`.
    PromptCompletion {
        /// The prompt (a user turn when a chat template exists).
        prompt: String,
        /// The completion (an assistant turn when a chat template exists).
        completion: String,
    },
    /// `{"messages": [...], "tools": [...]}`.
    Chat {
        /// The messages, validated, tool-call arguments as objects; ready for the template.
        messages: Vec<Value>,
        /// The role of each message (same order).
        roles: Vec<Role>,
        /// The tool schemas, if any.
        tools: Option<Value>,
    },
}

/// Parses and validates one non-blank JSONL line.
pub fn parse_record(line: &str, at: &Location, cfg: &DataConfig) -> Result<Record, DataError> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| DataError::Json { at: at.clone(), message: e.to_string() })?;
    let Value::Object(obj) = value else {
        return Err(shape(at, "<line>", format!("expected a JSON object, found {}", kind(&value))));
    };
    let present = |key: &str| obj.get(key).is_some_and(|v| !v.is_null());
    if present(&cfg.messages_key) {
        parse_chat(&obj, at, cfg)
    } else if present(&cfg.prompt_key) || present(&cfg.completion_key) {
        let prompt = string_field(&obj, &cfg.prompt_key, at)?;
        let completion = string_field(&obj, &cfg.completion_key, at)?;
        if completion.is_empty() {
            return Err(DataError::EmptyField {
                at: at.clone(),
                field: cfg.completion_key.clone(),
            });
        }
        Ok(Record::PromptCompletion { prompt, completion })
    } else if present(&cfg.text_key) {
        let text = string_field(&obj, &cfg.text_key, at)?;
        if text.is_empty() {
            return Err(DataError::EmptyField { at: at.clone(), field: cfg.text_key.clone() });
        }
        Ok(Record::Text { text })
    } else {
        Err(DataError::UnknownFormat {
            at: at.clone(),
            found: obj.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
            expected: format!(
                "`{}`, `{}` + `{}`, or `{}`",
                cfg.text_key, cfg.prompt_key, cfg.completion_key, cfg.messages_key
            ),
        })
    }
}

fn parse_chat(
    obj: &Map<String, Value>,
    at: &Location,
    cfg: &DataConfig,
) -> Result<Record, DataError> {
    let key = &cfg.messages_key;
    let Some(Value::Array(list)) = obj.get(key) else {
        let found = obj.get(key).map_or("nothing", kind);
        return Err(shape(at, key, format!("expected an array of messages, found {found}")));
    };
    if list.is_empty() {
        return Err(DataError::EmptyField { at: at.clone(), field: key.clone() });
    }
    let mut messages = Vec::with_capacity(list.len());
    let mut roles = Vec::with_capacity(list.len());
    for (i, msg) in list.iter().enumerate() {
        let (msg, role) = parse_message(msg, &format!("{key}[{i}]"), at)?;
        messages.push(msg);
        roles.push(role);
    }
    let tools = match obj.get(&cfg.tools_key) {
        None | Some(Value::Null) => None,
        Some(tools) => Some(check_tools(tools, &cfg.tools_key, at)?),
    };
    Ok(Record::Chat { messages, roles, tools })
}

fn parse_message(msg: &Value, path: &str, at: &Location) -> Result<(Value, Role), DataError> {
    let Value::Object(m) = msg else {
        return Err(shape(at, path, format!("expected a message object, found {}", kind(msg))));
    };
    let role_name = match m.get("role") {
        None | Some(Value::Null) => return Err(missing(at, &format!("{path}.role"))),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(shape(
                at,
                &format!("{path}.role"),
                format!("expected a string, found {}", kind(other)),
            ));
        }
    };
    let role = Role::parse(role_name).ok_or_else(|| DataError::UnknownRole {
        at: at.clone(),
        field: format!("{path}.role"),
        role: role_name.clone(),
    })?;
    let mut m = m.clone();
    let has_calls = non_empty_array(&m, "tool_calls");
    let has_responses = non_empty_array(&m, "tool_responses");
    if has_calls {
        if !role.is_assistant() {
            return Err(shape(
                at,
                &format!("{path}.tool_calls"),
                "only assistant messages carry tool_calls".into(),
            ));
        }
        normalise_tool_calls(&mut m, path, at)?;
    }
    for key in ["reasoning_content", "reasoning", "thinking"] {
        if let Some(v) = m.get(key).filter(|v| !v.is_null() && !v.is_string()) {
            return Err(shape(
                at,
                &format!("{path}.{key}"),
                format!("expected a string, found {}", kind(v)),
            ));
        }
    }
    let content_path = format!("{path}.content");
    match m.get("content") {
        None | Some(Value::Null)
            if has_calls || has_responses || matches!(role, Role::System | Role::Developer) => {}
        None | Some(Value::Null) => return Err(missing(at, &content_path)),
        Some(Value::String(s))
            if s.trim().is_empty() && needs_text(role, has_calls || has_responses) =>
        {
            return Err(DataError::EmptyField { at: at.clone(), field: content_path });
        }
        Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => check_parts(parts, &content_path, at)?,
        Some(other) => {
            let msg = format!("expected a string or a list of text parts, found {}", kind(other));
            return Err(shape(at, &content_path, msg));
        }
    }
    Ok((Value::Object(m), role))
}

/// User and (tool-call-free) assistant messages must say something.
fn needs_text(role: Role, has_tool_io: bool) -> bool {
    role == Role::User || (role.is_assistant() && !has_tool_io)
}

fn check_parts(parts: &[Value], path: &str, at: &Location) -> Result<(), DataError> {
    if parts.is_empty() {
        return Err(DataError::EmptyField { at: at.clone(), field: path.to_string() });
    }
    for (j, part) in parts.iter().enumerate() {
        let p = format!("{path}[{j}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => match part.get("text") {
                Some(Value::String(_)) => {}
                None | Some(Value::Null) => return Err(missing(at, &format!("{p}.text"))),
                Some(v) => {
                    return Err(shape(
                        at,
                        &format!("{p}.text"),
                        format!("expected a string, found {}", kind(v)),
                    ));
                }
            },
            Some(other) => {
                let msg = format!(
                    "unsupported content part type \"{other}\" (text-only training: use \"text\")"
                );
                return Err(shape(at, &format!("{p}.type"), msg));
            }
            None => return Err(missing(at, &format!("{p}.type"))),
        }
    }
    Ok(())
}

/// Validates `tool_calls` and turns JSON-string `arguments` into objects.
fn normalise_tool_calls(
    m: &mut Map<String, Value>,
    path: &str,
    at: &Location,
) -> Result<(), DataError> {
    let Some(Value::Array(calls)) = m.get_mut("tool_calls") else {
        return Ok(());
    };
    for (j, call) in calls.iter_mut().enumerate() {
        let p = format!("{path}.tool_calls[{j}].function");
        let Some(Value::Object(function)) = call.get_mut("function") else {
            return Err(missing(at, &p));
        };
        match function.get("name") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => {
                return Err(DataError::EmptyField { at: at.clone(), field: format!("{p}.name") });
            }
            None | Some(Value::Null) => return Err(missing(at, &format!("{p}.name"))),
            Some(v) => {
                return Err(shape(
                    at,
                    &format!("{p}.name"),
                    format!("expected a string, found {}", kind(v)),
                ));
            }
        }
        let parsed = match function.get("arguments") {
            None | Some(Value::Null) | Some(Value::Object(_)) => None,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => Some(v),
                Ok(v) => {
                    let msg = format!(
                        "expected a JSON object (or a string holding one), found {}",
                        kind(&v)
                    );
                    return Err(shape(at, &format!("{p}.arguments"), msg));
                }
                Err(e) => {
                    return Err(shape(
                        at,
                        &format!("{p}.arguments"),
                        format!("not valid JSON: {e}"),
                    ));
                }
            },
            Some(v) => {
                let msg = format!("expected a JSON object or a JSON string, found {}", kind(v));
                return Err(shape(at, &format!("{p}.arguments"), msg));
            }
        };
        if let Some(args) = parsed {
            function.insert("arguments".into(), args);
        }
    }
    Ok(())
}

fn check_tools(tools: &Value, key: &str, at: &Location) -> Result<Value, DataError> {
    let Value::Array(list) = tools else {
        return Err(shape(
            at,
            key,
            format!("expected an array of tool schemas, found {}", kind(tools)),
        ));
    };
    for (i, tool) in list.iter().enumerate() {
        let name = tool.get("function").and_then(|f| f.get("name"));
        match name {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(missing(at, &format!("{key}[{i}].function.name"))),
        }
    }
    Ok(tools.clone())
}

fn string_field(obj: &Map<String, Value>, key: &str, at: &Location) -> Result<String, DataError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(missing(at, key)),
        Some(v) => Err(shape(at, key, format!("expected a string, found {}", kind(v)))),
    }
}

fn non_empty_array(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn shape(at: &Location, field: &str, message: String) -> DataError {
    DataError::Shape { at: at.clone(), field: field.to_string(), message }
}

fn missing(at: &Location, field: &str) -> DataError {
    DataError::Missing { at: at.clone(), field: field.to_string() }
}

/// JSON type names as users know them.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
