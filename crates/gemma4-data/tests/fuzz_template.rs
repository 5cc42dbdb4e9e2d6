//! Fuzzing (proptest) the chat template input: `ChatTemplate::render` of the built-in template
//! (and of the real Gemma 4 template when `../shared/templates` exists) on arbitrary message
//! lists, roles, contents and tools — unvalidated, as a caller could pass them — and templates
//! compiled from arbitrary Jinja fragments (a broken `chat_template.jinja`). Nothing panics;
//! failures are `DataError::Template` naming the template.
//!
//! 256 cases per target by default; longer: `PROPTEST_CASES=20000 cargo test -p gemma4-data fuzz`.

mod fuzz_common;

use std::collections::BTreeMap;

use fuzz_common::{arb_json, arb_message, arb_text, templates};
use gemma4_data::ChatTemplate;
use proptest::prelude::*;
use serde_json::Value;

/// Messages: a list of (mostly) message objects, or any JSON at all.
fn arb_messages() -> impl Strategy<Value = Value> {
    prop_oneof![6 => proptest::collection::vec(arb_message(), 0..7).prop_map(Value::Array), 1 => arb_json()]
}

fn check_render(
    t: &ChatTemplate,
    messages: &Value,
    tools: Option<&Value>,
    gen_prompt: bool,
    thinking: bool,
) -> Result<(), TestCaseError> {
    match t.render(messages, tools, gen_prompt, thinking) {
        Ok(text) => prop_assert_eq!(
            Some(text),
            t.render(messages, tools, gen_prompt, thinking).ok(),
            "rendering is deterministic"
        ),
        Err(e) => {
            prop_assert!(e.to_string().starts_with(&format!("chat template {}", t.origin())), "{e}")
        }
    }
    Ok(())
}

/// Template sources: Jinja fragments (statements, filters, loops, macros) and hostile text.
fn arb_source() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![
        3 => proptest::sample::select(&[
            "{{ ", " }}", "{% ", " %}", "{%- ", " -%}", "{# ", " #}", "for m in messages", "endfor", "if ", "elif ", "else",
            "endif", "m['role']", "m.content", "messages[0]", "messages[-1]", "loop.index", "raise_exception('x')",
            "bos_token", "tools | tojson", "|trim", "|length", "range(5)", "range(100000000)", "set x = ", "x", "macro f(a)",
            "endmacro", "f(1)", "f(f)", "namespace(a=1)", "ns.a", " ~ ", " + ", " * ", " / 0", "[1,2]", "{'a': 1}",
            "'str'", "none", "true", "add_generation_prompt", "enable_thinking", ".startswith('a')", ".split()",
            "|map(attribute='x')", "|selectattr('role', 'equalto', 'user')", "is defined", "is string", "not ",
            "\n", " ", "text ",
        ][..]).prop_map(String::from),
        // Whole statements, so loops, conditions and macros really run.
        3 => proptest::sample::select(&[
            "{% for m in messages %}", "{% endfor %}", "{% if m.role == 'user' %}", "{% elif m.content is string %}",
            "{% else %}", "{% endif %}", "{{ m['role'] }}", "{{ m.content | trim }}", "{{ m.content[0].text }}",
            "{{ bos_token }}", "{% set ns = namespace(n=0) %}", "{% set ns.n = ns.n + 1 %}", "{{ ns.n }}",
            "{% macro f(a) %}{{ a }}{{ f(a) }}{% endmacro %}", "{{ f(m) }}", "{{ messages | tojson }}", "{{ tools | tojson }}",
            "{% for i in range(5) %}", "{{ 'ab' * 1000000000000 }}", "{{ raise_exception('no') }}", "{{ loop.index0 }}",
            "{% if add_generation_prompt %}<|turn>model\n{% endif %}", "{{ m.tool_calls[0].function.arguments | tojson }}",
            "{% for k, v in m | dictsort %}{{ k }}={{ v }}{% endfor %}", "{{ m.content.split('x')[-1] }}",
        ][..]).prop_map(String::from),
        1 => arb_text(),
    ], 0..24).prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn fuzz_template_render_never_panics(
        messages in arb_messages(), tools in proptest::option::of(arb_json()), gen_prompt in any::<bool>(), thinking in any::<bool>(),
    ) {
        for t in templates() {
            check_render(t, &messages, tools.as_ref(), gen_prompt, thinking)?;
        }
    }

    /// Templates built from Jinja fragments: compile errors and render errors, never a panic
    /// or a hang (minijinja bounds recursion, and `range` and loop sizes).
    #[test]
    fn fuzz_template_source_never_panics(
        source in arb_source(),
        messages in arb_messages(),
    ) {
        let special = BTreeMap::from([("bos_token".to_string(), "<bos>".to_string())]);
        match ChatTemplate::new(&source, None, "fuzz.jinja", special) {
            Ok(t) => check_render(&t, &messages, None, true, false)?,
            Err(e) => prop_assert!(e.to_string().starts_with("chat template fuzz.jinja"), "{e}"),
        }
    }
}

/// The generators reach rendering (not only errors): counts over 500 cases each.
#[test]
fn fuzz_generator_reaches_rendering() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let builtin = &templates()[0];
    let rendered = (0..500)
        .filter(|_| {
            builtin
                .render(
                    &arb_messages().new_tree(&mut runner).unwrap().current(),
                    None,
                    false,
                    false,
                )
                .is_ok()
        })
        .count();
    let real = templates().get(1).map(|t| {
        (0..500)
            .filter(|_| {
                t.render(
                    &arb_messages().new_tree(&mut runner).unwrap().current(),
                    None,
                    false,
                    false,
                )
                .is_ok()
            })
            .count()
    });
    let special = std::collections::BTreeMap::new();
    let sources: Vec<String> =
        (0..500).map(|_| arb_source().new_tree(&mut runner).unwrap().current()).collect();
    let compiled: Vec<ChatTemplate> = sources
        .iter()
        .filter_map(|s| ChatTemplate::new(s, None, "fuzz.jinja", special.clone()).ok())
        .collect();
    let source_rendered = compiled
        .iter()
        .filter(|t| t.render(&Value::Array(vec![]), None, true, false).is_ok())
        .count();
    println!(
        "of 500 message lists: {rendered} rendered by the built-in template, {real:?} by the real one; of 500 sources: {} compiled, {source_rendered} rendered",
        compiled.len()
    );
    assert!(
        rendered >= 100 && compiled.len() >= 50 && source_rendered >= 25,
        "{rendered} {} {source_rendered}",
        compiled.len()
    );
}
