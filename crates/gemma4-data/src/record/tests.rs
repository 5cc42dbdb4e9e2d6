//! Unit tests of record parsing and validation.

use super::*;
use std::path::Path;

fn parse(line: &str) -> Result<Record, DataError> {
    parse_record(line, &Location::new(Path::new("d.jsonl"), 3), &DataConfig::new("d.jsonl"))
}

fn err(line: &str) -> String {
    parse(line).unwrap_err().to_string()
}

#[test]
fn each_format_is_detected_by_its_key() {
    assert_eq!(parse(r#"{"text":"hi"}"#).unwrap(), Record::Text { text: "hi".into() });
    assert!(matches!(
        parse(r#"{"prompt":"a","completion":"b"}"#).unwrap(),
        Record::PromptCompletion { .. }
    ));
    let chat =
        parse(r#"{"messages":[{"role":"user","content":"a"},{"role":"model","content":"b"}]}"#)
            .unwrap();
    let Record::Chat { roles, tools, .. } = chat else { panic!("not chat") };
    assert_eq!(roles, [Role::User, Role::Model]);
    assert!(tools.is_none());
}

#[test]
fn errors_name_file_line_and_field() {
    assert_eq!(err("{\"text\": 1}"), "d.jsonl:3: field `text`: expected a string, found a number");
    assert!(err("{not json").starts_with("d.jsonl:3: malformed JSON: "));
    assert_eq!(err("[1]"), "d.jsonl:3: field `<line>`: expected a JSON object, found an array");
    assert!(err(r#"{"input":"x"}"#).starts_with("d.jsonl:3: unknown record format: keys [input]"));
    assert_eq!(err(r#"{"prompt":"x"}"#), "d.jsonl:3: field `completion`: missing");
    assert_eq!(err(r#"{"messages":[]}"#), "d.jsonl:3: field `messages`: empty");
    let role =
        err(r#"{"messages":[{"role":"user","content":"a"},{"role":"narrator","content":"b"}]}"#);
    assert!(
        role.starts_with("d.jsonl:3: field `messages[1].role`: unknown role \"narrator\""),
        "{role}"
    );
    assert_eq!(
        err(r#"{"messages":[{"role":"user"}]}"#),
        "d.jsonl:3: field `messages[0].content`: missing"
    );
    let part = err(r#"{"messages":[{"role":"user","content":[{"type":"image"}]}]}"#);
    assert!(
        part.contains("`messages[0].content[0].type`: unsupported content part type \"image\""),
        "{part}"
    );
}

#[test]
fn string_tool_call_arguments_become_objects() {
    let line = r#"{"messages":[{"role":"user","content":"2+3?"},
        {"role":"assistant","tool_calls":[{"type":"function","function":{"name":"add","arguments":"{\"a\": 2}"}}]}]}"#;
    let Record::Chat { messages, .. } = parse(&line.replace('\n', "")).unwrap() else { panic!() };
    assert_eq!(messages[1]["tool_calls"][0]["function"]["arguments"], serde_json::json!({"a": 2}));
}

#[test]
fn bad_tool_calls_are_named() {
    let bad_json = r#"{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}]}"#;
    assert!(
        err(bad_json).contains("`messages[0].tool_calls[0].function.arguments`: not valid JSON")
    );
    let on_user =
        r#"{"messages":[{"role":"user","content":"x","tool_calls":[{"function":{"name":"f"}}]}]}"#;
    assert!(err(on_user).contains("only assistant messages carry tool_calls"));
    let tools = r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#;
    assert_eq!(err(tools), "d.jsonl:3: field `tools[0].function.name`: missing");
}

#[test]
fn configured_key_names_are_used_in_detection_and_errors() {
    let mut cfg = DataConfig::new("d");
    cfg.messages_key = "conversation".into();
    let at = Location::new(Path::new("d"), 1);
    let e =
        parse_record(r#"{"conversation":[{"role":"x","content":"a"}]}"#, &at, &cfg).unwrap_err();
    assert!(e.to_string().contains("`conversation[0].role`"), "{e}");
}
