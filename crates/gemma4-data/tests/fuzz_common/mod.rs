//! Generators and fixtures shared by the fuzz targets (`fuzz_records.rs`, `fuzz_template.rs`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use gemma4_data::{ChatTemplate, Tokenizer, tiny_tokenizer};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

pub fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(tiny_tokenizer)
}

/// The built-in template and, when present, the real one (`<repo>/../shared/templates`).
pub fn templates() -> &'static Vec<ChatTemplate> {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = vec![ChatTemplate::builtin()];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/templates");
        if let Ok(source) = std::fs::read_to_string(dir.join("gemma-4-31B-it.chat_template.jinja"))
        {
            let special = ChatTemplate::builtin().special_tokens().clone();
            t.push(
                ChatTemplate::new(&source, None, "real", special)
                    .expect("the real template compiles"),
            );
        }
        t
    })
}

// ── Generators: record-shaped JSON with hostile contents ──

/// Text rich in the template's and tokenizer's own markers, Jinja syntax and odd characters.
pub fn arb_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "<bos>",
        "<eos>",
        "<pad>",
        "<|turn>",
        "<turn|>",
        "<|channel>",
        "<channel|>",
        "<|tool_call>",
        "<tool_call|>",
        "<|\"|>",
        "<|think|>",
        "<start_of_image>",
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "user\n",
        "model\n",
        "\n",
        "\r\n",
        " ",
        "\t",
        "\u{0}",
        "\u{feff}",
        "\u{fffd}",
        "é",
        "東京",
        "😀",
        "\\",
        "\"",
        "a",
    ];
    let piece = prop_oneof![
        proptest::sample::select(PIECES).prop_map(String::from),
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9 ]{1,12}"
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Any JSON value (bounded size).
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(arb_text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub fn arb_role() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::sample::select(&["system", "developer", "user", "assistant", "model", "tool"][..]).prop_map(Value::from),
        1 => arb_text().prop_map(Value::String),
        1 => arb_json(),
    ]
}

pub fn arb_content() -> impl Strategy<Value = Option<Value>> {
    let part = prop_oneof![
        3 => arb_text().prop_map(|t| json!({"type": "text", "text": t})),
        1 => arb_json(),
    ];
    prop_oneof![
        4 => arb_text().prop_map(|t| Some(Value::String(t))),
        2 => proptest::collection::vec(part, 0..3).prop_map(|v| Some(Value::Array(v))),
        1 => arb_json().prop_map(Some),
        1 => Just(None),
    ]
}

pub fn arb_tool_call() -> impl Strategy<Value = Value> {
    let args = prop_oneof![
        arb_json(),
        arb_json().prop_map(|v| Value::String(v.to_string())),
        arb_text().prop_map(Value::String)
    ];
    prop_oneof![
        4 => ("[a-z_.-]{0,8}", args).prop_map(|(name, arguments)| json!({"type": "function", "function": {"name": name, "arguments": arguments}})),
        1 => arb_json(),
    ]
}

pub fn arb_message() -> impl Strategy<Value = Value> {
    let extra = proptest::collection::btree_map(
        proptest::sample::select(
            &[
                "tool_calls",
                "tool_responses",
                "reasoning_content",
                "thinking",
                "reasoning",
                "name",
                "tool_call_id",
            ][..],
        ),
        prop_oneof![
            proptest::collection::vec(arb_tool_call(), 0..3).prop_map(Value::Array),
            arb_json()
        ],
        0..2,
    );
    prop_oneof![
        8 => (arb_role(), arb_content(), extra).prop_map(|(role, content, extra)| {
            let mut m = Map::new();
            m.insert("role".into(), role);
            if let Some(c) = content {
                m.insert("content".into(), c);
            }
            for (k, v) in extra {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        }),
        1 => arb_json(),
    ]
}
