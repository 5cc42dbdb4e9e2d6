//! Golden tests: our rendering equals transformers' `apply_chat_template`, byte for byte.
//!
//! `tests/fixtures/chat/rendered.json` is written by `tests/reference/chat_goldens.py`
//! (transformers 5.24.0 with the real Gemma 4 template). The real template itself lives outside
//! the repository (`<repo>/../shared/templates/`); tests that need it print a message and pass
//! when it is absent. The built-in template is checked against the same goldens on the plain
//! chats, which need no external file.

use gemma4_data::mask::chat_spans;
use gemma4_data::{ChatTemplate, DataConfig, Location, Record, parse_record};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TEMPLATE_FILE: &str = "gemma-4-31B-it.chat_template.jinja";
/// Conversations the built-in template must render exactly as the real one.
const PLAIN: [&str; 8] = [
    "single_turn",
    "multi_turn",
    "system",
    "developer_and_model_roles",
    "whitespace_and_unicode",
    "content_parts",
    "thinking",
    "prompt_completion_as_chat",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn goldens() -> Value {
    let path = repo().join("tests/fixtures/chat/rendered.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The real template, or `None` (with a message) when `../shared/templates` is absent.
fn real_template(goldens: &Value) -> Option<ChatTemplate> {
    let path = repo().join("../shared/templates").join(TEMPLATE_FILE);
    let Ok(source) = std::fs::read_to_string(&path) else {
        println!(
            "skipped: {} not found (the real Gemma 4 template lives outside the repo)",
            path.display()
        );
        return None;
    };
    assert_eq!(
        source.chars().count() as u64,
        goldens["template"]["chars"].as_u64().unwrap(),
        "template changed"
    );
    let special: BTreeMap<String, String> =
        serde_json::from_value(goldens["special_tokens"].clone()).unwrap();
    Some(ChatTemplate::new(&source, None, &path.display().to_string(), special).unwrap())
}

/// The sample as a JSONL line, through the crate's own record parser.
fn parse(sample: &Value) -> (Vec<Value>, Vec<gemma4_data::Role>, Option<Value>) {
    let mut line = json!({"messages": sample["messages"]});
    if let Some(tools) = sample.get("tools") {
        line["tools"] = tools.clone();
    }
    let at = Location::new(Path::new("rendered.json"), 1);
    match parse_record(&line.to_string(), &at, &DataConfig::new("x")).unwrap() {
        Record::Chat { messages, roles, tools } => (messages, roles, tools),
        other => panic!("not a chat record: {other:?}"),
    }
}

fn check_renders(t: &ChatTemplate, sample: &Value) -> usize {
    let name = sample["name"].as_str().unwrap();
    let (messages, _, tools) = parse(sample);
    let mut checked = 0;
    for r in sample["renders"].as_array().unwrap() {
        let (gen_prompt, think) = (
            r["add_generation_prompt"].as_bool().unwrap(),
            r["enable_thinking"].as_bool().unwrap(),
        );
        let got =
            t.render(&Value::Array(messages.clone()), tools.as_ref(), gen_prompt, think).unwrap();
        assert_eq!(
            got,
            r["text"].as_str().unwrap(),
            "{name}: add_generation_prompt={gen_prompt} enable_thinking={think}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn real_template_renders_exactly_as_transformers_apply_chat_template() {
    let g = goldens();
    let Some(t) = real_template(&g) else { return };
    let mut checked = 0;
    for sample in g["samples"].as_array().unwrap() {
        checked += check_renders(&t, sample);
        let (messages, _, tools) = parse(sample);
        for p in sample["prompts"].as_array().unwrap() {
            let k = p["index"].as_u64().unwrap() as usize;
            let think = p["enable_thinking"].as_bool().unwrap();
            let got = t
                .render(&Value::Array(messages[..k].to_vec()), tools.as_ref(), true, think)
                .unwrap();
            assert_eq!(
                got,
                p["text"].as_str().unwrap(),
                "{}: prompt before message {k}",
                sample["name"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 44, "only {checked} renders checked");
}

#[test]
fn builtin_template_matches_the_real_one_on_plain_chats() {
    let g = goldens();
    let t = ChatTemplate::builtin();
    for sample in g["samples"].as_array().unwrap() {
        if PLAIN.contains(&sample["name"].as_str().unwrap()) {
            check_renders(&t, sample);
        }
    }
}

/// Trained text of each span, for one golden sample rendered by `t`.
fn trained(t: &ChatTemplate, g: &Value, name: &str, think: bool) -> Vec<String> {
    let sample = g["samples"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
    let (messages, roles, tools) = parse(sample);
    let full = t.render(&Value::Array(messages.clone()), tools.as_ref(), false, think).unwrap();
    let spans = chat_spans(t, &messages, &roles, tools.as_ref(), think, &full).unwrap();
    spans.into_iter().map(|s| full[s].to_string()).collect()
}

#[test]
fn real_template_masks_train_exactly_the_model_output() {
    let g = goldens();
    let Some(t) = real_template(&g) else { return };
    for think in [false, true] {
        assert_eq!(
            trained(&t, &g, "multi_turn", think),
            ["Hello. How can I help?<turn|>", "cba<turn|>"]
        );
        assert_eq!(
            trained(&t, &g, "thinking", think),
            ["Yes, 7 is prime.<turn|>", "No, 9 = 3 x 3.<turn|>"]
        );
        assert_eq!(
            trained(&t, &g, "tools_openai_style", think),
            [
                "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2,exact:true,note:None,tags:[<|\"|>now<|\"|>,\
                 <|\"|>x<|\"|>],unit:<|\"|>celsius<|\"|>,where:{lat:48.85,lon:2.35}}<tool_call|><turn|>",
                "21 °C in Paris.<turn|>"
            ]
        );
    }
}

#[test]
fn real_template_masks_train_gemma_native_tool_use() {
    let g = goldens();
    let Some(t) = real_template(&g) else { return };
    // Gemma-native tool use: calls and the hand-over tag are trained, results are not. Without
    // thinking the generation prompt already holds `<|channel>thought\n`, so the reasoning
    // text starts the output; with thinking the whole thought channel is output.
    let native = [
        "Two additions.<channel|><|tool_call>call:add{a:2,b:3}<tool_call|><|tool_response>",
        "<|tool_call>call:add{a:5,b:5}<tool_call|><|tool_response>",
        "5 and 10.<turn|>",
    ];
    assert_eq!(trained(&t, &g, "tools_gemma_native", false), native);
    // History drops the first turn's reasoning once a new user turn follows; the span measured
    // in the conversation cut after that turn (reasoning shown) is aligned into the full text.
    for think in [false, true] {
        assert_eq!(
            trained(&t, &g, "tool_reasoning_then_new_user", think),
            [
                "<|tool_call>call:add{a:1,b:2}<tool_call|><|tool_response>",
                "It is 3.<turn|>",
                "You are welcome.<turn|>"
            ],
            "thinking {think}"
        );
    }
    let mut with_thought = native.map(String::from).to_vec();
    with_thought[0] = format!("<|channel>thought\n{}", native[0]);
    assert_eq!(trained(&t, &g, "tools_gemma_native", true), with_thought);
}

#[test]
fn real_template_token_targets_mark_the_same_text_through_the_tiny_tokenizer() {
    let g = goldens();
    let Some(t) = real_template(&g) else { return };
    let sample = g["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tools_gemma_native")
        .unwrap();
    let line = json!({"messages": sample["messages"], "tools": sample["tools"]}).to_string();
    let (at, cfg, tok) = (
        Location::new(Path::new("x.jsonl"), 1),
        DataConfig::new("x"),
        gemma4_data::tiny_tokenizer(),
    );
    let s = gemma4_data::encode_record(
        &parse_record(&line, &at, &cfg).unwrap(),
        &at,
        &cfg,
        Some(&t),
        &tok,
    )
    .unwrap();
    let shown = gemma4_data::show_sample(&s, &tok);
    // Before the second call the generation prompt at that point (thinking off) ends in an empty
    // thought channel that the rendered conversation lacks: it is inserted, untrained.
    let want = "<|turn>model\n<|channel>thought\n⟦Two additions.<channel|><|tool_call>call:add{a:2,b:3}<tool_call|>\
                <|tool_response>⟧response:add{result:5}<tool_response|><|channel>thought\n<channel|>⟦<|tool_call>call:add{a:5,b:5}<tool_call|>\
                <|tool_response>⟧response:add{value:10}<tool_response|>⟦5 and 10.<turn|>⟧\n";
    assert!(shown.ends_with(want), "{shown}");
    assert_eq!(s.ids.iter().filter(|&&i| i == 2).count(), 1, "one <bos>");
}

#[test]
fn real_template_masks_an_assistant_first_conversation() {
    let g = goldens();
    let Some(t) = real_template(&g) else { return };
    let messages = vec![
        json!({"role": "assistant", "content": "Welcome"}),
        json!({"role": "user", "content": "Hi"}),
    ];
    let roles = [gemma4_data::Role::Assistant, gemma4_data::Role::User];
    let full = t.render(&Value::Array(messages.clone()), None, false, false).unwrap();
    let spans = chat_spans(&t, &messages, &roles, None, false, &full).unwrap();
    assert_eq!(spans.into_iter().map(|s| &full[s]).collect::<Vec<_>>(), ["Welcome<turn|>"]);
}
