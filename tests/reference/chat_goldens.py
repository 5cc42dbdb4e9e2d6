#!/usr/bin/env python3
"""Chat-template goldens: transformers' own `apply_chat_template` on the real Gemma 4 template.

Renders a fixed set of conversations (single turn, multi-turn, system, developer, thinking with
reasoning, tools + tool calls + tool results, Gemma-native `tool_responses`, a tool turn whose
reasoning history drops once a new user turn follows, prompt/completion as chat, content parts,
odd whitespace, unicode) with the real template
(`../shared/templates/gemma-4-31B-it.chat_template.jinja`, never copied into this repo) through
`PreTrainedTokenizerFast.apply_chat_template(..., tokenize=False)` — the exact code path users of
transformers run — with `add_generation_prompt` and `enable_thinking` both ways. For every
assistant message k it also renders the prompt `messages[:k]` with `add_generation_prompt=True`,
the string the Rust mask code compares against.

Writes `tests/fixtures/chat/rendered.json`:
    {"template": {file, sha256, chars}, "transformers": version,
     "special_tokens": {bos_token: "<bos>", ...},
     "samples": [{"name", "messages", "tools"?,               # the JSONL record's fields, as written
                  "renders": [{"add_generation_prompt", "enable_thinking", "text"}],
                  "prompts": [{"index": k, "enable_thinking", "text"}]}]}

The Rust tests (crates/gemma4-data/tests/chat_goldens.rs) parse `messages`/`tools` through the
crate's record parser, render them with minijinja and compare byte for byte.

One normalisation happens before transformers sees the messages, the same one
`crates/gemma4-data/src/record.rs` applies: a tool call's `arguments` given as a JSON *string*
(OpenAI style) is parsed into an object, since the Gemma 4 template only formats objects
(`call:f{key:value}`) and would otherwise paste the raw JSON text between the braces.
Everything else (dropping null-valued keys, aliasing `reasoning`/`thinking` to
`reasoning_content`) is transformers' own doing, mirrored by the crate's template code.

Usage (from the repository root; /work/venv-ref or any env with transformers==5.24.0, jinja2):
    python tests/reference/chat_goldens.py            # (re)write tests/fixtures/chat/rendered.json
    python tests/reference/chat_goldens.py --check    # compare with the committed file
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT.parent / "shared" / "templates" / "gemma-4-31B-it.chat_template.jinja"
OUT = ROOT / "tests" / "fixtures" / "chat" / "rendered.json"

# Gemma 4's special-token map (tokenizer_config.json of the -it checkpoints); the template reads bos_token.
SPECIAL = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "description": "Unit", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "description": "Forecast days", "nullable": True},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {
                    "type": "object",
                    "description": "Coordinates",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat"],
                },
            },
            "required": ["city"],
        },
    },
}

ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def samples() -> list[dict]:
    """The conversations, as they would appear in a JSONL line."""
    return [
        {"name": "single_turn", "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"}]},
        {"name": "multi_turn", "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello. How can I help?"},
            {"role": "user", "content": "Reverse: abc"},
            {"role": "assistant", "content": "cba"}]},
        {"name": "system", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."}]},
        {"name": "developer_and_model_roles", "messages": [
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
            {"role": "model", "content": "Bonjour"}]},
        {"name": "whitespace_and_unicode", "messages": [
            {"role": "system", "content": "  Be nice.\n"},
            {"role": "user", "content": "\n  Grüße, 世界 — ok?  \n"},
            {"role": "assistant", "content": "  Ja: 你好 ✓\n\n"}]},
        {"name": "content_parts", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": " Part two."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Both read."}]}]},
        {"name": "thinking", "messages": [
            {"role": "system", "content": "Think first."},
            {"role": "user", "content": "Is 7 prime?"},
            {"role": "assistant", "reasoning_content": "7 has no divisors but 1 and 7.",
             "content": "<|channel>thought\nCheck 2..6.<channel|>Yes, 7 is prime."},
            {"role": "user", "content": "And 9?"},
            {"role": "assistant", "reasoning": "9 = 3*3.", "content": "No, 9 = 3 x 3."}]},
        {"name": "tools_openai_style", "tools": [WEATHER_TOOL], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {
                    "name": "get_weather",
                    "arguments": {"city": "Paris", "unit": "celsius", "days": 2, "tags": ["now", "x"],
                                  "where": {"lat": 48.85, "lon": 2.35}, "exact": True, "note": None}}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21}"},
            {"role": "assistant", "content": "21 °C in Paris."}]},
        {"name": "tool_call_string_arguments", "tools": [ADD_TOOL], "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "2+3?"},
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}},
                {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 1}"}}]},
            {"role": "tool", "content": "5"},
            {"role": "tool", "content": "2"},
            {"role": "assistant", "content": "5 (and 2)."}]},
        {"name": "tools_gemma_native", "tools": [ADD_TOOL], "messages": [
            {"role": "user", "content": "Add 2 and 3, then 5 and 5."},
            {"role": "assistant", "reasoning_content": "Two additions.",
             "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}],
             "tool_responses": [{"name": "add", "response": {"result": 5}}]},
            {"role": "assistant",
             "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 5, "b": 5}}}],
             "tool_responses": [{"name": "add", "response": 10}],
             "content": "5 and 10."}]},
        {"name": "tool_reasoning_then_new_user", "tools": [ADD_TOOL], "messages": [
            {"role": "user", "content": "Add 1 and 2."},
            {"role": "assistant", "reasoning_content": "Use add.",
             "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}],
             "tool_responses": [{"name": "add", "response": {"result": 3}}],
             "content": "It is 3."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You are welcome."}]},
        {"name": "prompt_completion_as_chat", "messages": [
            {"role": "user", "content": "Reverse: hello"},
            {"role": "assistant", "content": "olleh"}]},
    ]


def normalise(messages: list[dict]) -> list[dict]:
    """What record.rs does before rendering: JSON-string tool-call arguments become objects."""
    out = copy.deepcopy(messages)
    for m in out:
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    return out


def tokenizer(template: str) -> PreTrainedTokenizerFast:
    """A throwaway tokenizer: only its special-token map and chat template matter here."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL.values())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=template, **SPECIAL)


def render(tok, messages, tools, gen: bool, think: bool) -> str:
    return tok.apply_chat_template(
        normalise(messages), tools=tools, add_generation_prompt=gen, enable_thinking=think, tokenize=False
    )


def build() -> dict:
    template = TEMPLATE.read_text(encoding="utf-8")
    tok = tokenizer(template)
    out = []
    for s in samples():
        msgs, tools = s["messages"], s.get("tools")
        renders = [
            {"add_generation_prompt": gen, "enable_thinking": think, "text": render(tok, msgs, tools, gen, think)}
            for think in (False, True)
            for gen in (False, True)
        ]
        prompts = [
            {"index": k, "enable_thinking": think, "text": render(tok, msgs[:k], tools, True, think)}
            for think in (False, True)
            for k, m in enumerate(msgs)
            if m["role"] in ("assistant", "model") and k > 0
        ]
        entry = {"name": s["name"], "messages": msgs}
        if tools is not None:
            entry["tools"] = tools
        entry["renders"] = renders
        entry["prompts"] = prompts
        out.append(entry)
    return {
        "template": {
            "file": TEMPLATE.name,
            "sha256": hashlib.sha256(template.encode()).hexdigest(),
            "chars": len(template),
        },
        "transformers": transformers.__version__,
        "special_tokens": SPECIAL,
        "samples": out,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args()
    if not TEMPLATE.exists():
        print(f"skipped: {TEMPLATE} not found (the real template lives outside the repo)")
        return 0
    text = json.dumps(build(), ensure_ascii=False, indent=1) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("rendered.json is up to date" if same else f"{OUT} differs from a fresh render")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(out_samples(text))} samples)")
    return 0


def out_samples(text: str) -> list:
    return json.loads(text)["samples"]


if __name__ == "__main__":
    sys.exit(main())
