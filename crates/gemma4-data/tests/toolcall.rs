//! Gemma 4 output parsing: a table of shapes, goldens from the real template (jinja2), a
//! render → parse round-trip property, and never-panic fuzzing over junk and truncations.

use gemma4_data::{ParsedOutput, parse_output, render_call};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

/// Test inputs write the `<|"|>` string delimiter as `§`.
fn q(s: &str) -> String {
    s.replace('§', "<|\"|>")
}

fn calls(out: &ParsedOutput) -> Value {
    out.tool_calls.iter().map(|c| json!([c.name, c.arguments])).collect()
}

/// (label, input with `§` = `<|"|>`, thinking, content, calls as `[[name, args], …]`,
/// a substring every warning set must contain — `""` means no warnings at all).
type Row = (&'static str, &'static str, Option<&'static str>, &'static str, Value, &'static str);

#[rustfmt::skip]
fn table() -> Vec<Row> {
    let none = json!([]);
    vec![
        ("plain text", "Hello there.", None, "Hello there.", none.clone(), ""),
        ("stop tokens stripped", "Hi.<turn|>\n<eos>", None, "Hi.", none.clone(), ""),
        ("one string arg", "<|tool_call>call:get_weather{city:§Paris§}<tool_call|><|tool_response>",
            None, "", json!([["get_weather", {"city": "Paris"}]]), ""),
        ("hyphenated name", "<|tool_call>call:get-current-weather{a:1}<tool_call|>",
            None, "", json!([["get-current-weather", {"a": 1}]]), ""),
        ("dotted name", "<|tool_call>call:github.create_issue{title:§x§}<tool_call|>",
            None, "", json!([["github.create_issue", {"title": "x"}]]), ""),
        ("braces, commas, colons in strings", "<|tool_call>call:f{q:§a{b},c:d}}§,r:§[1,2]§}<tool_call|>",
            None, "", json!([["f", {"q": "a{b},c:d}}", "r": "[1,2]"}]]), ""),
        ("quotes and newlines in strings", "<|tool_call>call:say{text:§He said \"hi\"\nthen 'bye'§}<tool_call|>",
            None, "", json!([["say", {"text": "He said \"hi\"\nthen 'bye'"}]]), ""),
        ("special tokens inside a string", "<|tool_call>call:f{s:§<tool_call|><|channel>§}<tool_call|>",
            None, "", json!([["f", {"s": "<tool_call|><|channel>"}]]), ""),
        ("unicode", "<|tool_call>call:route{from:§Zürich§,to:§東京 😀§,né:1}<tool_call|>",
            None, "", json!([["route", {"from": "Zürich", "to": "東京 😀", "né": 1}]]), ""),
        ("empty args", "<|tool_call>call:now{}<tool_call|>", None, "", json!([["now", {}]]), ""),
        ("numbers of every kind", "<|tool_call>call:n{a:0,b:-7,c:3.25,d:-0.5,e:1e-05,f:2.5E+3,g:18446744073709551615,h:-0.0}<tool_call|>",
            None, "", json!([["n", {"a": 0, "b": -7, "c": 3.25, "d": -0.5, "e": 1e-5, "f": 2500.0, "g": u64::MAX, "h": -0.0}]]), ""),
        ("booleans and nulls", "<|tool_call>call:b{t:true,f:false,n:null,p:None}<tool_call|>",
            None, "", json!([["b", {"t": true, "f": false, "n": null, "p": null}]]), ""),
        ("nested objects", "<|tool_call>call:f{where:{lat:48.85,lon:2.35,meta:{src:§gps§}}}<tool_call|>",
            None, "", json!([["f", {"where": {"lat": 48.85, "lon": 2.35, "meta": {"src": "gps"}}}]]), ""),
        ("arrays of objects", "<|tool_call>call:add{items:[{id:1,tags:[§a§,§b§]},{id:2,tags:[]}]}<tool_call|>",
            None, "", json!([["add", {"items": [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}]}]]), ""),
        ("empty containers and string", "<|tool_call>call:f{a:[],o:{},s:§§}<tool_call|>",
            None, "", json!([["f", {"a": [], "o": {}, "s": ""}]]), ""),
        ("two calls in one block", "<|tool_call>call:a{x:1}call:b{y:§2§}<tool_call|>",
            None, "", json!([["a", {"x": 1}], ["b", {"y": "2"}]]), ""),
        ("two calls, newline between", "<|tool_call>call:a{}\ncall:b{}<tool_call|>",
            None, "", json!([["a", {}], ["b", {}]]), ""),
        ("two blocks", "<|tool_call>call:a{x:1}<tool_call|><|tool_call>call:a{x:2}<tool_call|><|tool_response>",
            None, "", json!([["a", {"x": 1}], ["a", {"x": 2}]]), ""),
        ("thinking then call", "<|channel>thought\nNeed the weather.<channel|><|tool_call>call:w{c:§Oslo§}<tool_call|><|tool_response>",
            Some("Need the weather."), "", json!([["w", {"c": "Oslo"}]]), ""),
        ("thinking then answer", "<|channel>thought\nstep 1\nstep 2<channel|>The answer is 4.<turn|>",
            Some("step 1\nstep 2"), "The answer is 4.", none.clone(), ""),
        ("text around a call", "Let me check.\n<|tool_call>call:f{}<tool_call|>",
            None, "Let me check.", json!([["f", {}]]), ""),
        ("whitespace between tokens", "<|tool_call> call:f{ a : 1 , b : [ 1 , 2 ] } <tool_call|>",
            None, "", json!([["f", {"a": 1, "b": [1, 2]}]]), ""),
        ("quoted keys and JSON strings accepted", "<|tool_call>call:f{§k 1§:1,\"k2\":\"v\\n\"}<tool_call|>",
            None, "", json!([["f", {"k 1": 1, "k2": "v\n"}]]), ""),
        ("repeated key: last wins", "<|tool_call>call:f{a:1,a:2}<tool_call|>", None, "", json!([["f", {"a": 2}]]), ""),
        ("empty thought channel", "<|channel>thought\n<channel|>Hi", None, "Hi", none.clone(), ""),
        ("call inside thinking stays thinking", "<|channel>thought\nmaybe <|tool_call>call:f{}<tool_call|><channel|>No.",
            Some("maybe <|tool_call>call:f{}<tool_call|>"), "No.", none.clone(), ""),
        ("unterminated thinking", "<|channel>thought\nI was thinking<turn|>",
            Some("I was thinking"), "", none.clone(), "unterminated thought channel"),
        ("orphan <channel|>", "reasoning here<channel|>Answer.",
            Some("reasoning here"), "Answer.", none.clone(), "without `<|channel>`"),
        ("unlabelled channel", "<|channel>musing<channel|>ok",
            Some("musing"), "ok", none.clone(), "without the `thought` label"),
        ("label must be a whole word", "<|channel>thoughtful<channel|>ok",
            Some("thoughtful"), "ok", none.clone(), "without the `thought` label"),
        ("bare label, no newline", "<|channel>thought<channel|>Hi", None, "Hi", none.clone(), ""),
        ("malformed: unbalanced braces", "<|tool_call>call:f{a:{b:1}<tool_call|>",
            None, "<|tool_call>call:f{a:{b:1}<tool_call|>", none.clone(), "expected `,` or `}`, found `<`"),
        ("malformed: unterminated string", "<|tool_call>call:f{a:§oops}<tool_call|>",
            None, "<|tool_call>call:f{a:§oops}<tool_call|>", none.clone(), "unterminated `<|\"|>` string"),
        ("malformed: missing call:", "<|tool_call>f{a:1}<tool_call|>",
            None, "<|tool_call>f{a:1}<tool_call|>", none.clone(), "missing `call:`"),
        ("malformed: junk value", "<|tool_call>call:f{city:Paris}<tool_call|>",
            None, "<|tool_call>call:f{city:Paris}<tool_call|>", none.clone(), "not a value: `Paris`"),
        ("malformed: trailing comma", "<|tool_call>call:f{a:1,}<tool_call|>",
            None, "<|tool_call>call:f{a:1,}<tool_call|>", none.clone(), "expected a key, found `}`"),
        ("malformed: no name", "<|tool_call>call:{a:1}<tool_call|>",
            None, "<|tool_call>call:{a:1}<tool_call|>", none.clone(), "missing function name"),
        ("malformed: unterminated block", "Sure.<|tool_call>call:f{a:1}",
            None, "Sure.<|tool_call>call:f{a:1}", none.clone(), "no `<tool_call|>`"),
        ("malformed: empty block", "<|tool_call><tool_call|>", None, "<|tool_call><tool_call|>", none.clone(), "empty"),
        ("malformed: infinity", "<|tool_call>call:f{x:1e999}<tool_call|>",
            None, "<|tool_call>call:f{x:1e999}<tool_call|>", none.clone(), "not a value: `1e999`"),
        ("bad block kept, good block parsed", "<|tool_call>call:f{a:x}<tool_call|><|tool_call>call:g{b:2}<tool_call|>",
            None, "<|tool_call>call:f{a:x}<tool_call|>", json!([["g", {"b": 2}]]), "not a value: `x`"),
    ]
}

#[test]
fn table_of_shapes() {
    let rows = table();
    assert!(rows.len() >= 25);
    for (label, input, thinking, content, want_calls, warn) in rows {
        let out = parse_output(&q(input));
        assert_eq!(out.thinking.as_deref(), thinking.map(q).as_deref(), "{label}: thinking");
        assert_eq!(out.content, q(content), "{label}: content");
        assert_eq!(calls(&out), want_calls, "{label}: calls");
        if warn.is_empty() {
            assert!(out.warnings.is_empty(), "{label}: unexpected warnings {:?}", out.warnings);
        } else {
            assert_eq!(out.warnings.len(), 1, "{label}: {:?}", out.warnings);
            assert!(out.warnings[0].contains(&q(warn)), "{label}: {:?}", out.warnings);
        }
    }
}

/// jinja2 3.1.6 rendering of `/work/shared/templates/gemma-4-31B-it.chat_template.jinja` (HF
/// settings: trim_blocks, lstrip_blocks) for an assistant message with these `tool_calls`:
/// Python `str()` numbers (`1e-05`, `1e+20`), `None`, case-insensitive `dictsort`.
#[test]
fn render_call_matches_the_real_template() {
    let goldens = [
        (
            "get_weather",
            json!({"city": "Paris", "days": 2, "exact": true, "note": null, "tags": ["now", "x"]}),
            "call:get_weather{city:§Paris§,days:2,exact:true,note:None,tags:[§now§,§x§]}",
        ),
        (
            "my-tool.v2",
            json!({"B": 1, "a": 2, "C": {"z": [], "Y": {}, "x": ""}}),
            "call:my-tool.v2{a:2,B:1,C:{x:§§,Y:{},z:[]}}",
        ),
        (
            "nums",
            json!({"f1": 1e-05, "f2": 1e20, "f3": 1e16, "f4": 1e15, "f5": 0.1, "f6": -0.0, "f7": 100.0,
            "f8": f64::MAX, "f9": 5e-324, "f10": 0.0001, "i1": -7, "i2": u64::MAX, "i3": i64::MIN, "f11": 123456789.125,
            "f12": -2.5e-7}),
            "call:nums{f1:1e-05,f10:0.0001,f11:123456789.125,f12:-2.5e-07,f2:1e+20,f3:1e+16,f4:1000000000000000.0,f5:0.1,\
             f6:-0.0,f7:100.0,f8:1.7976931348623157e+308,f9:5e-324,i1:-7,i2:18446744073709551615,i3:-9223372036854775808}",
        ),
        (
            "text",
            json!({"s": "a{b}c, d:e \"q\" \n<|tool_call> é 😀 ' [x]"}),
            "call:text{s:§a{b}c, d:e \"q\" \n<|tool_call> é 😀 ' [x]§}",
        ),
        (
            "items",
            json!({"list": [{"id": 1, "ok": false}, {"id": 2, "tags": ["a", null, 3.5]}]}),
            "call:items{list:[{id:1,ok:false},{id:2,tags:[§a§,None,3.5]}]}",
        ),
        ("noargs", json!({}), "call:noargs{}"),
    ];
    for (name, args, want) in goldens {
        let rendered = render_call(name, &args);
        assert_eq!(rendered, format!("<|tool_call>{}<tool_call|>", q(want)), "{name}");
        assert_eq!(calls(&parse_output(&rendered)), json!([[name, args]]), "{name}: round trip");
    }
}

#[test]
fn json_is_an_openai_assistant_message() {
    let out = parse_output(&q(
        "<|channel>thought\nhm<channel|><|tool_call>call:f{a:§x§,n:[1]}<tool_call|>",
    ));
    let want = json!({"role": "assistant", "content": null, "reasoning_content": "hm", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":\"x\",\"n\":[1]}"}}]});
    assert_eq!(out.to_json(), want);
    let plain = parse_output("Hi");
    assert_eq!(
        plain.to_json(),
        json!({"role": "assistant", "content": "Hi", "reasoning_content": null, "tool_calls": []})
    );
}

// ── Properties ──

/// Strings rich in the format's own punctuation and special tokens; never `<|"|>`.
#[rustfmt::skip]
fn arb_string() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "<|", "|>", "\"", "{", "}", "[", "]", ",", ":", "\n", " ", "<tool_call|>", "call:f{", "<channel|>", "None", "1e5",
    ];
    let piece = prop_oneof![
        proptest::sample::select(PIECES).prop_map(String::from),
        any::<char>().prop_map(String::from),
        "[a-zé東 ]{1,6}",
    ];
    proptest::collection::vec(piece, 0..8)
        .prop_map(|v| v.concat())
        .prop_filter("holds <|\"|>", |s| !s.contains("<|\"|>"))
}

fn arb_key() -> impl Strategy<Value = String> {
    "[A-Za-zÀ-ÿ_][A-Za-z0-9À-ÿ_.-]{0,6}( [a-z0-9]{1,3})?"
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("not finite", |f| Number::from_f64(f).map(Value::Number)),
        (-4000i32..4000).prop_map(|i| Value::from(f64::from(i) / 8.0)),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(arb_key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_args() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(arb_key(), arb_json(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,16}"
}

proptest! {
    #[test]
    fn render_then_parse_gives_back_the_call(name in arb_name(), args in arb_args()) {
        let out = parse_output(&render_call(&name, &args));
        prop_assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        prop_assert_eq!(out.content.as_str(), "");
        prop_assert_eq!(calls(&out), json!([[name, args]]));
    }

    #[test]
    fn thinking_text_and_several_calls_come_apart(
        thought in "[a-z .\n]{1,30}", text in "[a-zA-Z .,!?]{0,30}",
        list in proptest::collection::vec((arb_name(), arb_args()), 1..4),
    ) {
        let blocks: String = list.iter().map(|(n, a)| render_call(n, a)).collect();
        let out = parse_output(&format!("<|channel>thought\n{thought}<channel|>{text}{blocks}<|tool_response>"));
        prop_assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        prop_assert_eq!(out.thinking.as_deref(), Some(thought.as_str()));
        prop_assert_eq!(out.content.as_str(), text.trim());
        let want: Vec<Value> = list.iter().map(|(n, a)| json!([n, a])).collect();
        prop_assert_eq!(calls(&out), Value::Array(want));
    }

    #[test]
    fn token_soup_never_panics(soup in proptest::collection::vec(prop_oneof![
        proptest::sample::select(&["<|tool_call>", "<tool_call|>", "call:", "f-1", "{", "}", "[", "]", ",", ":", "<|\"|>",
            "<|channel>", "<channel|>", "thought\n", "<turn|>", "<eos>", "<|tool_response>", "1", "-2.5e3", "true", "None",
            "a", " ", "\""][..]).prop_map(String::from),
        any::<char>().prop_map(String::from),
    ], 0..40)) {
        let out = parse_output(&soup.concat());
        let _ = out.to_json();
        prop_assert!(out.warnings.iter().all(|w| !w.is_empty()));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_output(&String::from_utf8_lossy(&bytes)).to_json();
    }
}

#[test]
fn deep_nesting_is_a_warning_not_a_stack_overflow() {
    let out = parse_output(&format!("<|tool_call>call:f{{a:{}<tool_call|>", "[".repeat(100_000)));
    assert!(out.tool_calls.is_empty());
    assert!(out.warnings[0].contains("nested deeper than 64"), "{:?}", out.warnings);
    let ok = parse_output(&format!(
        "<|tool_call>call:f{{a:{}1{}}}<tool_call|>",
        "[".repeat(60),
        "]".repeat(60)
    ));
    assert_eq!(ok.tool_calls.len(), 1, "{:?}", ok.warnings);
}

#[test]
fn every_truncation_of_a_valid_output_parses_without_panic() {
    let full = q(
        "<|channel>thought\nPlan: {call} both.<channel|>On it.<|tool_call>call:a-b{s:§x{y}:z§,n:[1,{m:-2.5e-3}],t:true}\
                  call:c.d{}<tool_call|><|tool_call>call:e{u:§東京§}<tool_call|><|tool_response>",
    );
    let all = parse_output(&full);
    assert_eq!(all.tool_calls.len(), 3);
    for (cut, _) in full.char_indices() {
        let out = parse_output(&full[..cut]);
        assert!(out.tool_calls.len() <= 3, "cut at {cut}");
        for call in &out.tool_calls {
            assert!(all.tool_calls.contains(call), "cut at {cut}: invented {call:?}");
        }
    }
}
