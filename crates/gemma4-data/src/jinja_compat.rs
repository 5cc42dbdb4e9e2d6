//! A minijinja environment that renders HF chat templates the way transformers' jinja2 does.
//!
//! Mirrors `transformers.utils.chat_template_utils._cached_compile_jinja_template` (5.24):
//! `trim_blocks` + `lstrip_blocks`, `loopcontrols`, the `raise_exception` global, and a `tojson`
//! filter that is `json.dumps(x, ensure_ascii=False)` (no HTML escaping, `", "`/`": "`
//! separators, optional `indent`). Python string/dict methods (`text.split(…)`, `.strip()`,
//! `.items()`) come from minijinja-contrib's `pycompat`. Printing follows Python: `None`,
//! `True`, `False` (minijinja would print `none`, `true`, `false`), undefined prints nothing.
//!
//! Not mirrored: `strftime_now` renders an error (a date in training data would make the
//! rendering non-reproducible); object keys reach templates sorted (records are parsed with
//! serde_json's default sorted map), so `tojson` prints them sorted where Python would keep the
//! file's order — the Gemma 4 template sorts every map it prints (`dictsort`), so it is unaffected.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, syntax::SyntaxConfig};

/// A fresh environment configured like transformers' chat-template environment.
pub(crate) fn hf_environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    // A bound on template work: the real Gemma 4 template renders a long conversation in well
    // under 1% of this; a hostile template (nested huge loops) fails with an error instead of
    // running for minutes.
    env.set_fuel(Some(50_000_000));
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    Ok(env)
}

/// `{{ x }}` as Python's `str(x)` for the scalars where minijinja differs.
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => Ok(()),
        ValueKind::None => out.write_str("None").map_err(Error::from),
        ValueKind::Bool => {
            out.write_str(if value.is_true() { "True" } else { "False" }).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(_format: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        "strftime_now is not supported: a render-time date would make training data non-reproducible",
    ))
}

/// `json.dumps(value, ensure_ascii=False, indent=indent)`; `sort_keys` is accepted too.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    write_py_json(&mut out, &json, indent, sort_keys.unwrap_or(false), 0);
    Ok(Value::from_safe_string(out))
}

/// Python's json.dumps layout: `", "` and `": "` inline, or newline + `indent` spaces per level.
fn write_py_json(
    out: &mut String,
    v: &serde_json::Value,
    indent: Option<usize>,
    sort: bool,
    depth: usize,
) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_py_json(out, item, indent, sort, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            let mut entries: Vec<_> = map.iter().collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&J::String(k.clone()).to_string());
                out.push_str(": ");
                write_py_json(out, item, indent, sort, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: Value) -> String {
        hf_environment().unwrap().render_str(src, ctx).unwrap()
    }

    #[test]
    fn scalars_print_as_python_prints_them() {
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({"n": null, "t": true, "f": false, "x": 1.5}),
        ));
        assert_eq!(
            render("{{ n }} {{ t }} {{ f }} {{ x }} [{{ missing }}]", ctx),
            "None True False 1.5 []"
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps_for_sorted_keys() {
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({"v": {"b": [1, "é<"], "a": {}}}),
        ));
        assert_eq!(render("{{ v | tojson }}", ctx.clone()), r#"{"a": {}, "b": [1, "é<"]}"#);
        assert_eq!(
            render("{{ v | tojson(indent=2) }}", ctx),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"é<\"\n  ]\n}"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks_and_python_methods_work_like_transformers() {
        let ctx = Value::from(minijinja::value::Serde(serde_json::json!({"s": "a<x>b"})));
        assert_eq!(render("  {% if true %}\n{{ s.split('<x>')[1] }}\n  {% endif %}\n", ctx), "b\n");
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let err = hf_environment()
            .unwrap()
            .render_str("{{ raise_exception('no system role') }}", ())
            .unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel_instead_of_hanging() {
        let t0 = std::time::Instant::now();
        let src =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = hf_environment().unwrap().render_str(src, ()).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("fuel"), "{err}");
        assert!(t0.elapsed().as_secs() < 60);
    }
}
