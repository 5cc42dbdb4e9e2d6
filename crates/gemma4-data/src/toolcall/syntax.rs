//! The call syntax inside `<|tool_call>call:NAME{…}<tool_call|>`: a recursive-descent reader
//! of the template's argument grammar (`<|"|>` strings, bare keys, literal numbers/booleans,
//! nested objects and arrays) into JSON.

use serde_json::{Map, Number, Value};

use super::{CALL_CLOSE, MAX_DEPTH, QUOTE, ToolCall, excerpt};

/// Why a call block did not parse, and where (byte offset from `<|tool_call>`).
pub(super) struct Problem {
    pub(super) what: String,
    pub(super) at: usize,
}

/// A recursive-descent reader over one call block.
pub(super) struct Cursor<'a> {
    pub(super) s: &'a str,
    pub(super) i: usize,
    pub(super) depth: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn skip_ws(&mut self) {
        self.i = self.s.len() - self.rest().trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        let hit = self.rest().starts_with(token);
        self.i += if hit { token.len() } else { 0 };
        hit
    }

    /// Consumes the longest prefix whose characters pass `keep`.
    fn take(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.i += len;
        &rest[..len]
    }

    fn fail<T>(&self, what: impl Into<String>) -> Result<T, Problem> {
        Err(Problem { what: what.into(), at: self.i })
    }

    /// Fails naming what the parser met instead of `wanted`.
    fn expected<T>(&self, wanted: &str) -> Result<T, Problem> {
        match self.rest().chars().next() {
            Some(c) => self.fail(format!("expected {wanted}, found `{c}`")),
            None => self.fail(format!("expected {wanted}, found the end (unbalanced braces?)")),
        }
    }

    /// `call:NAME{…}` one or more times (whitespace between), then `<tool_call|>`.
    pub(super) fn calls(&mut self) -> Result<Vec<ToolCall>, Problem> {
        let mut calls = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(CALL_CLOSE) {
                return if calls.is_empty() {
                    self.fail("empty `<|tool_call>` block")
                } else {
                    Ok(calls)
                };
            }
            if self.rest().is_empty() {
                return self.fail("unterminated `<|tool_call>` (no `<tool_call|>`)");
            }
            if !self.eat("call:") {
                return self.fail("missing `call:`");
            }
            let name = self.take(|c| c.is_alphanumeric() || "_-.".contains(c)).to_string();
            if name.is_empty() {
                return self.fail("missing function name");
            }
            if !self.eat("{") {
                return self.expected(&format!("`{{` after function name `{name}`"));
            }
            calls.push(ToolCall { name, arguments: self.items("}", true)? });
        }
    }

    /// After `{` (`object`: `key:value` pairs, a repeated key keeps its last value) or `[`
    /// (values): comma-separated items up to `close`.
    fn items(&mut self, close: &str, object: bool) -> Result<Value, Problem> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(format!("arguments nested deeper than {MAX_DEPTH}"));
        }
        let (mut map, mut list) = (Map::new(), Vec::new());
        self.skip_ws();
        let mut more = !self.eat(close);
        while more {
            if object {
                self.skip_ws();
                let key = self.key()?;
                self.skip_ws();
                if !self.eat(":") {
                    return self.expected(&format!("`:` after key `{key}`"));
                }
                map.insert(key, self.value()?);
            } else {
                list.push(self.value()?);
            }
            self.skip_ws();
            more = !self.eat(close);
            if more && !self.eat(",") {
                return self.expected(&format!("`,` or `{close}`"));
            }
        }
        self.depth -= 1;
        Ok(if object { Value::Object(map) } else { Value::Array(list) })
    }

    /// A bare key (the template's form, up to `:`), or a `<|"|>`- or JSON-quoted one.
    fn key(&mut self) -> Result<String, Problem> {
        if self.eat(QUOTE) {
            return self.quoted();
        }
        if self.rest().starts_with('"') {
            return self.json_string();
        }
        let rest = self.rest();
        let end = rest.find([':', '{', '}', '[', ']', ',']).unwrap_or(rest.len());
        let end = rest[..end].find(QUOTE).unwrap_or(end);
        let key = rest[..end].trim_end();
        if key.is_empty() {
            return self.expected("a key");
        }
        self.i += end;
        Ok(key.to_string())
    }

    fn value(&mut self) -> Result<Value, Problem> {
        self.skip_ws();
        if self.eat(QUOTE) {
            return self.quoted().map(Value::String);
        }
        if self.eat("{") {
            return self.items("}", true);
        }
        if self.eat("[") {
            return self.items("]", false);
        }
        if self.rest().starts_with('"') {
            return self.json_string().map(Value::String);
        }
        let at = self.i;
        match self.take(|c| c.is_alphanumeric() || "+-._".contains(c)) {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" | "None" => Ok(Value::Null), // jinja2 prints Python's None as `None`
            "" => self.expected("a value"),
            token => number(token)
                .map(Value::Number)
                .ok_or(Problem { what: format!("not a value: `{}`", excerpt(token)), at }),
        }
    }

    /// After an opening `<|"|>`: everything up to the next one, verbatim.
    fn quoted(&mut self) -> Result<String, Problem> {
        let Some(len) = self.rest().find(QUOTE) else {
            return self.fail("unterminated `<|\"|>` string");
        };
        let s = self.rest()[..len].to_string();
        self.i += len + QUOTE.len();
        Ok(s)
    }

    /// A JSON `"…"` string: not what the template writes, but unambiguous, so accepted.
    fn json_string(&mut self) -> Result<String, Problem> {
        let mut strings = serde_json::Deserializer::from_str(self.rest()).into_iter::<String>();
        match strings.next() {
            Some(Ok(s)) => {
                self.i += strings.byte_offset();
                Ok(s)
            }
            _ => self.fail("bad JSON string"),
        }
    }
}

/// A JSON-grammar number (also Python's `1e-05`, `1e+20`); integers stay integers, floats are
/// parsed with correct rounding so rendered floats come back bit-exact. `None` for inf/NaN/junk.
fn number(token: &str) -> Option<Number> {
    let digits = token.strip_prefix('-').unwrap_or(token);
    if !digits.starts_with(|c: char| c.is_ascii_digit())
        || !token.chars().all(|c| "0123456789+-.eE".contains(c))
    {
        return None;
    }
    if !digits.contains(['.', 'e', 'E']) {
        if let Ok(i) = token.parse::<i64>() {
            return Some(i.into());
        }
        if let Ok(u) = token.parse::<u64>() {
            return Some(u.into());
        }
    }
    token.parse::<f64>().ok().and_then(Number::from_f64)
}
