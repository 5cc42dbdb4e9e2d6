//! Loss masks from token spans: which tokens of a sample are trained.
//!
//! **Chat.** The sample's text is the whole conversation rendered by the template (`full`). For
//! each assistant message `k` we render
//!
//! * `P = render(messages[..k], add_generation_prompt = true)` — what inference would feed, and
//! * `A = render(messages[..=k], add_generation_prompt = false)` — the conversation through `k`,
//!
//! and take the assistant's output as `A[lcp(P, A)..]`. The longest common prefix (not
//! `len(P)`) is what makes this robust to Gemma 4, whose non-thinking generation prompt ends in
//! an empty thought channel `<|channel>thought\n<channel|>` that the rendered conversation does
//! not contain (mlx-lm#1355 divided by zero there). A prefix that stops inside a `<…>` tag is
//! moved back to the tag's `<`, so a tag shared only in part (`<|tool_call>` vs `<|turn>`) is
//! never split. The output span is then located in `full`: directly when `A` is a prefix of
//! `full` (the usual case), else by aligning `A` with `full` (`align.rs`: Gemma 4 drops
//! the reasoning of tool-call turns once a later user turn exists, so history can render
//! differently from the conversation cut at `k`). An assistant-first conversation has no
//! prompt to render (templates reject an empty one), so its first output is measured after a
//! placeholder user turn and aligned the same way.
//!
//! **What the span holds.** The model's text plus the `<turn|>` that ends it — everything the
//! model must generate to finish its turn, stop token included. The newline the template writes
//! *after* `<turn|>` is not trained (trailing whitespace of the output is dropped): generation
//! stops at `<turn|>`, so the model never produces it. Tool results the template writes inside
//! a model turn (Gemma-native `tool_responses`: `<|tool_response>response:f{…}<tool_response|>`)
//! are not model output either: the opening `<|tool_response>` stays trained (the model emits it
//! to hand over, it is a stop token), the rest of each result up to and including its
//! `<tool_response|>` is not, nor are the opening tags of further results that follow.
//!
//! **Tokens.** A token is trained when its first byte lies inside a trained span, so a token
//! that straddles the prompt/answer boundary counts as prompt (inference tokenises the prompt
//! alone). Token 0 is never trained: nothing predicts it.

use crate::align::{floor_char_boundary, locate, snap_before_open_tag};
use crate::error::DataError;
use crate::record::Role;
use crate::template::ChatTemplate;
use serde_json::{Value, json};
use std::ops::Range;

const TOOL_RESPONSE_OPEN: &str = "<|tool_response>";
const TOOL_RESPONSE_CLOSE: &str = "<tool_response|>";
/// Content of the placeholder user turn put before an assistant-first conversation.
const PROBE: &str = "…";

/// The training text of a conversation and the byte spans the assistant messages produced.
///
/// The text is the rendered conversation `full`, except that before each assistant output we
/// insert what the generation prompt adds beyond the rendered history (Gemma 4 with thinking
/// off: the empty thought channel `<|channel>thought\n<channel|>`), untrained: every trained
/// turn then sees exactly the prefix inference will feed (lessons §4c), instead of a context the
/// model never gets at inference time.
pub fn chat_text_and_spans(
    template: &ChatTemplate,
    messages: &[Value],
    roles: &[Role],
    tools: Option<&Value>,
    enable_thinking: bool,
    full: &str,
) -> Result<(String, Vec<Range<usize>>), DataError> {
    let (spans, inserts) =
        chat_spans_inner(template, messages, roles, tools, enable_thinking, full)?;
    let mut text =
        String::with_capacity(full.len() + inserts.iter().map(|i| i.1.len()).sum::<usize>());
    let mut shifted = Vec::with_capacity(spans.len());
    let mut from = 0;
    let mut shift = 0;
    let mut pending = inserts.into_iter().peekable();
    for span in spans {
        while let Some((at, _)) = pending.peek() {
            if *at > span.start {
                break;
            }
            let (at, extra) = pending.next().unwrap_or_default();
            text.push_str(&full[from..at]);
            text.push_str(&extra);
            from = at;
            shift += extra.len();
        }
        shifted.push(span.start + shift..span.end + shift);
    }
    text.push_str(&full[from..]);
    Ok((text, shifted))
}

/// Byte spans of `full` (the rendered conversation) that the assistant messages produced.
pub fn chat_spans(
    template: &ChatTemplate,
    messages: &[Value],
    roles: &[Role],
    tools: Option<&Value>,
    enable_thinking: bool,
    full: &str,
) -> Result<Vec<Range<usize>>, DataError> {
    Ok(chat_spans_inner(template, messages, roles, tools, enable_thinking, full)?.0)
}

/// Spans, and `(position, text)` generation-prompt extras to insert before them (sorted).
#[allow(clippy::type_complexity)]
fn chat_spans_inner(
    template: &ChatTemplate,
    messages: &[Value],
    roles: &[Role],
    tools: Option<&Value>,
    enable_thinking: bool,
    full: &str,
) -> Result<(Vec<Range<usize>>, Vec<(usize, String)>), DataError> {
    let mut inserts = Vec::new();
    let mut spans = Vec::new();
    for (k, role) in roles.iter().enumerate() {
        if !role.is_assistant() {
            continue;
        }
        let (part, span, extra) =
            match output_of_last(template, &messages[..=k], tools, enable_thinking) {
                Ok(found) => found,
                // Templates (and transformers) reject an empty conversation, the prompt of an
                // assistant-first one: measure the output after a placeholder user turn instead.
                Err(e) if k == 0 => {
                    let probe = [json!({"role": "user", "content": PROBE}), messages[0].clone()];
                    output_of_last(template, &probe, tools, enable_thinking).map_err(|_| e)?
                }
                Err(e) => return Err(e),
            };
        if let Some(span) = locate(&part, span, full) {
            // Only a whole extra (the output does not itself continue it, e.g. thoughts written
            // into the channel the prompt would have closed) and only where it is missing.
            let output = full.get(span.clone()).unwrap_or_default();
            if !extra.is_empty()
                && !full[..span.start].ends_with(extra.as_str())
                && !output.contains(extra.as_str())
            {
                inserts.push((span.start, extra));
            }
            spans.push(span);
        }
    }
    inserts.sort_by_key(|i| i.0);
    Ok((subtract_tool_results(full, merge(spans)), inserts))
}

/// Renders `conversation` and finds its last message's output in it: `A[lcp(P, A)..]` with
/// trailing whitespace dropped (see the module docs); also returns `P[lcp..]`, what the
/// generation prompt has beyond the shared prefix.
fn output_of_last(
    template: &ChatTemplate,
    conversation: &[Value],
    tools: Option<&Value>,
    enable_thinking: bool,
) -> Result<(String, Range<usize>, String), DataError> {
    let last = conversation.len() - 1;
    let through =
        template.render(&Value::Array(conversation.to_vec()), tools, false, enable_thinking)?;
    let prompt = template.render(
        &Value::Array(conversation[..last].to_vec()),
        tools,
        true,
        enable_thinking,
    )?;
    let start = snap_before_open_tag(&through, common_prefix(&prompt, &through));
    let end = start + through[start..].trim_end().len();
    let extra = prompt.get(start..).unwrap_or_default().to_owned();
    Ok((through, start..end, extra))
}

/// `target[t]`: token `t` starts inside a span (and `t > 0`).
pub fn targets_from_spans(offsets: &[(usize, usize)], spans: &[Range<usize>]) -> Vec<bool> {
    offsets
        .iter()
        .enumerate()
        .map(|(t, &(start, _))| t > 0 && spans.iter().any(|s| s.contains(&start)))
        .collect()
}

/// Length in bytes of the longest common prefix, on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    floor_char_boundary(a, n)
}

/// Sorted, non-overlapping union of spans.
fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_by_key(|s| s.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// Removes tool results written inside model turns (see the module docs).
fn subtract_tool_results(full: &str, spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    let mut holes = Vec::new();
    let mut from = 0;
    while let Some(i) = full[from..].find(TOOL_RESPONSE_OPEN) {
        let open = from + i;
        let after_open = open + TOOL_RESPONSE_OPEN.len();
        // A result directly after another result is the environment's too, tag included.
        let chained = full[..open].ends_with(TOOL_RESPONSE_CLOSE);
        let close = full[after_open..]
            .find(TOOL_RESPONSE_CLOSE)
            .map_or(full.len(), |j| after_open + j + TOOL_RESPONSE_CLOSE.len());
        holes.push(if chained { open } else { after_open }..close);
        from = close.max(after_open);
    }
    if holes.is_empty() {
        return spans;
    }
    let mut out = Vec::new();
    for s in spans {
        let mut cur = s.start;
        for h in holes.iter().filter(|h| h.start < s.end && h.end > s.start) {
            if h.start > cur {
                out.push(cur..h.start);
            }
            cur = cur.max(h.end);
        }
        if cur < s.end {
            out.push(cur..s.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans_of(messages: Value, think: bool) -> (String, Vec<String>) {
        let t = ChatTemplate::builtin();
        let list = messages.as_array().unwrap().clone();
        let roles: Vec<Role> =
            list.iter().map(|m| Role::parse(m["role"].as_str().unwrap()).unwrap()).collect();
        let full = t.render(&messages, None, false, think).unwrap();
        let spans = chat_spans(&t, &list, &roles, None, think, &full).unwrap();
        let texts = spans.iter().map(|s| full[s.clone()].to_string()).collect();
        (full, texts)
    }

    #[test]
    fn assistant_spans_are_the_answers_with_their_end_of_turn_even_though_the_prompt_is_not_a_prefix()
     {
        let msgs = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                          {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]);
        for think in [false, true] {
            let (_, spans) = spans_of(msgs.clone(), think);
            assert_eq!(spans, ["Hello<turn|>", "Ciao<turn|>"], "thinking {think}");
        }
    }

    #[test]
    fn an_assistant_first_conversation_trains_only_the_answer() {
        let msgs =
            json!([{"role": "assistant", "content": "Welcome"}, {"role": "user", "content": "Hi"}]);
        assert_eq!(spans_of(msgs, false).1, ["Welcome<turn|>"]);
    }

    #[test]
    fn the_output_starts_before_a_tag_the_prompt_shares_only_in_part() {
        let (prompt, through) = ("x<|turn>model\n", "x<|tool_call>call:f{}<tool_call|>");
        assert_eq!(common_prefix(prompt, through), 4);
        assert_eq!(snap_before_open_tag(through, common_prefix(prompt, through)), 1);
    }

    #[test]
    fn tool_results_inside_a_model_turn_are_not_trained_but_the_handover_tag_is() {
        let full = "<|turn>model\n<|tool_call>call:f{}<tool_call|><|tool_response>response:f{a:1}<tool_response|>\
                    <|tool_response>response:g{}<tool_response|>Done<turn|>";
        let start = full.find("<|tool_call>").unwrap();
        let got = subtract_tool_results(full, std::iter::once(start..full.len()).collect());
        let texts: Vec<&str> = got.iter().map(|s| &full[s.clone()]).collect();
        assert_eq!(texts, ["<|tool_call>call:f{}<tool_call|><|tool_response>", "Done<turn|>"]);
    }

    #[test]
    fn tokens_are_trained_when_they_start_inside_a_span_and_never_at_position_zero() {
        let offsets = [(0, 0), (0, 1), (1, 3), (3, 4), (4, 5)];
        assert_eq!(targets_from_spans(&offsets, &[0..1, 3..5]), [false, true, false, true, true]);
    }
}
