//! `ChatTemplate`: a checkpoint's Jinja chat template, rendered as transformers renders it.
//!
//! Where the template comes from (`from_model_dir`, transformers' order): `chat_template.jinja`,
//! else `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`:
//! `default`, plus `tool_use` for records with tools, as `get_chat_template` picks), else
//! `chat_template.json` (processor layout). [`ChatTemplate::builtin`] is our own compact Gemma 4
//! template (`builtin_template.jinja`) for checkpoints that ship none.
//!
//! `render` is `tokenizer.apply_chat_template(messages, tools=…, add_generation_prompt=…,
//! enable_thinking=…, tokenize=False)`: the special-token strings (`bos_token`, …) from
//! `tokenizer_config.json` are template variables, null-valued message keys are dropped and
//! `reasoning` / `thinking` are aliased to `reasoning_content` (transformers 5.24
//! `_normalize_chat_messages`, `_alias_reasoning_fields`). Goldens: `tests/chat_goldens.rs`.

use crate::error::DataError;
use crate::jinja_compat::hf_environment;
use minijinja::{Environment, Value as JValue};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

const BUILTIN: &str = include_str!("builtin_template.jinja");
/// Special-token attributes transformers passes to templates (`SPECIAL_TOKENS_ATTRIBUTES`).
const SPECIAL_KEYS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];
/// Gemma 4's strings, used when a directory has no `tokenizer_config.json` (and by `builtin`).
const GEMMA_SPECIAL: [(&str, &str); 5] = [
    ("bos_token", "<bos>"),
    ("eos_token", "<eos>"),
    ("unk_token", "<unk>"),
    ("pad_token", "<pad>"),
    ("mask_token", "<mask>"),
];

/// A compiled chat template plus the special-token strings it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    has_tool_use: bool,
    origin: String,
    special: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("special", &self.special)
            .finish()
    }
}

impl ChatTemplate {
    /// The template a checkpoint directory ships, or `None` if it ships none.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>, DataError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() { Some(read_json(&config_path)?) } else { None };
        let special = match &config {
            Some(cfg) => special_tokens(cfg),
            None => gemma_special(),
        };
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let text = read_text(&jinja)?;
            return Self::new(&text, None, &jinja.display().to_string(), special).map(Some);
        }
        if let Some(t) =
            config.as_ref().and_then(|c| c.get("chat_template")).filter(|t| !t.is_null())
        {
            let origin = format!("{} (chat_template)", config_path.display());
            let (main, tool_use) = pick_templates(t, &origin)?;
            return Self::new(&main, tool_use.as_deref(), &origin, special).map(Some);
        }
        let processor = dir.join("chat_template.json");
        if processor.is_file() {
            let origin = processor.display().to_string();
            if let Some(t) = read_json(&processor)?.get("chat_template").filter(|t| !t.is_null()) {
                let (main, tool_use) = pick_templates(t, &origin)?;
                return Self::new(&main, tool_use.as_deref(), &origin, special).map(Some);
            }
        }
        Ok(None)
    }

    /// Our own compact Gemma 4 template (not Google's), with Gemma 4's special-token strings.
    pub fn builtin() -> Self {
        // The built-in source is part of this crate and covered by tests: it always compiles.
        match Self::new(BUILTIN, None, "built-in", gemma_special()) {
            Ok(t) => t,
            Err(e) => unreachable!("built-in template does not compile: {e}"),
        }
    }

    /// Compiles `source` (and an optional `tool_use` variant); `origin` names it in errors;
    /// `special` maps `bos_token` etc. to their strings.
    pub fn new(
        source: &str,
        tool_use: Option<&str>,
        origin: &str,
        special: BTreeMap<String, String>,
    ) -> Result<Self, DataError> {
        let err = |e: minijinja::Error| DataError::Template {
            origin: origin.to_string(),
            message: describe(&e),
        };
        let mut env = hf_environment().map_err(err)?;
        env.add_template_owned("default", source.to_string()).map_err(err)?;
        if let Some(t) = tool_use {
            env.add_template_owned("tool_use", t.to_string()).map_err(err)?;
        }
        Ok(Self { env, has_tool_use: tool_use.is_some(), origin: origin.to_string(), special })
    }

    /// Renders a conversation (a JSON array of message objects) to text.
    pub fn render(
        &self,
        messages: &Value,
        tools: Option<&Value>,
        add_generation_prompt: bool,
        enable_thinking: bool,
    ) -> Result<String, DataError> {
        let Value::Array(list) = messages else {
            return Err(self.error("messages must be a JSON array".into()));
        };
        let messages: Vec<Value> = list.iter().map(normalise_message).collect();
        let mut ctx: BTreeMap<String, JValue> =
            self.special.iter().map(|(k, v)| (k.clone(), JValue::from(v.as_str()))).collect();
        ctx.insert("messages".into(), JValue::from(minijinja::value::Serde(&messages)));
        ctx.insert(
            "tools".into(),
            tools.map_or(JValue::from(()), |t| JValue::from(minijinja::value::Serde(t))),
        );
        ctx.insert("documents".into(), JValue::from(()));
        ctx.insert("add_generation_prompt".into(), JValue::from(add_generation_prompt));
        ctx.insert("enable_thinking".into(), JValue::from(enable_thinking));
        let name = if tools.is_some() && self.has_tool_use { "tool_use" } else { "default" };
        let template = self.env.get_template(name).map_err(|e| self.error(describe(&e)))?;
        template.render(ctx).map_err(|e| self.error(describe(&e)))
    }

    /// The `bos_token` string the template renders, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.special.get("bos_token").map(String::as_str)
    }

    /// All special-token strings passed to the template (`bos_token` → `<bos>`, …).
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special
    }

    /// Where the template came from: a file path or `built-in`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn error(&self, message: String) -> DataError {
        DataError::Template { origin: self.origin.clone(), message }
    }
}

/// transformers' per-message normalisation: drop null values, alias reasoning fields.
fn normalise_message(m: &Value) -> Value {
    let Value::Object(obj) = m else { return m.clone() };
    let mut out: Map<String, Value> =
        obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let reasoning =
        ["reasoning_content", "thinking", "reasoning"].iter().find_map(|k| out.get(*k).cloned());
    if let Some(r) = reasoning {
        out.entry("thinking").or_insert_with(|| r.clone());
        out.insert("reasoning_content".into(), r);
    }
    Value::Object(out)
}

/// `chat_template` as a string, or a list of `{name, template}` (`default` + optional `tool_use`).
fn pick_templates(t: &Value, origin: &str) -> Result<(String, Option<String>), DataError> {
    let bad = |message: &str| DataError::Template {
        origin: origin.to_string(),
        message: message.to_string(),
    };
    match t {
        Value::String(s) => Ok((s.clone(), None)),
        Value::Array(list) => {
            let named = |name: &str| {
                list.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
                    .and_then(|e| e.get("template").and_then(Value::as_str))
                    .map(str::to_string)
            };
            let main = named("default")
                .ok_or_else(|| bad("a list of templates with none named \"default\""))?;
            Ok((main, named("tool_use")))
        }
        _ => Err(bad("expected a string or a list of {name, template}")),
    }
}

/// `bos_token` etc. from tokenizer_config.json: a string or an AddedToken object `{content}`.
fn special_tokens(cfg: &Value) -> BTreeMap<String, String> {
    SPECIAL_KEYS
        .iter()
        .filter_map(|k| {
            let v = cfg.get(*k)?;
            let s = v.as_str().or_else(|| v.get("content").and_then(Value::as_str))?;
            Some((k.to_string(), s.to_string()))
        })
        .collect()
}

fn gemma_special() -> BTreeMap<String, String> {
    GEMMA_SPECIAL.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn read_text(path: &Path) -> Result<String, DataError> {
    fs::read_to_string(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })
}

fn read_json(path: &Path) -> Result<Value, DataError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| DataError::Template {
        origin: path.display().to_string(),
        message: format!("malformed JSON: {e}"),
    })
}

/// minijinja's message plus the template line, without the debug dump.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => {
            format!("{} (template line {line})", e.detail().unwrap_or(&e.kind().to_string()))
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_renders_a_plain_chat_in_gemma_4_form() {
        let t = ChatTemplate::builtin();
        let msgs = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}]);
        let want = "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello<turn|>\n";
        assert_eq!(t.render(&msgs, None, false, false).unwrap(), want);
        let prompt =
            t.render(&json!([{"role": "user", "content": "Hi"}]), None, true, false).unwrap();
        assert_eq!(
            prompt,
            "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
        );
    }

    #[test]
    fn model_dir_prefers_jinja_then_tokenizer_config_and_reads_bos() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
        let cfg = json!({"bos_token": {"content": "<s>"}, "chat_template": [
            {"name": "default", "template": "{{ bos_token }}D"}, {"name": "tool_use", "template": "T"}]});
        fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let t = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
        let msgs = json!([{"role": "user", "content": "x"}]);
        assert_eq!(t.render(&msgs, None, false, false).unwrap(), "<s>D");
        assert_eq!(t.render(&msgs, Some(&json!([])), false, false).unwrap(), "T");
        fs::write(dir.path().join("chat_template.jinja"), "J{{ bos_token }}").unwrap();
        let t = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
        assert_eq!(t.render(&msgs, None, false, false).unwrap(), "J<s>");
        assert_eq!(t.bos_token(), Some("<s>"));
    }

    #[test]
    fn reasoning_is_aliased_and_nulls_dropped_as_transformers_does() {
        let t = ChatTemplate::new(
            "{{ messages[0].reasoning_content }}|{{ messages[0].content is defined }}",
            None,
            "t",
            BTreeMap::new(),
        )
        .unwrap();
        let out = t
            .render(
                &json!([{"role": "assistant", "reasoning": "r", "content": null}]),
                None,
                false,
                false,
            )
            .unwrap();
        assert_eq!(out, "r|False");
    }

    #[test]
    fn template_errors_name_the_origin_and_line() {
        let e = ChatTemplate::new("{% if %}", None, "x/chat_template.jinja", BTreeMap::new())
            .unwrap_err();
        assert!(e.to_string().starts_with("chat template x/chat_template.jinja: "), "{e}");
        let t = ChatTemplate::new("a\n{{ raise_exception('nope') }}", None, "t", BTreeMap::new())
            .unwrap();
        let e = t.render(&json!([]), None, false, false).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("line 2"), "{e}");
    }
}
