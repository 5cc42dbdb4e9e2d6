#!/usr/bin/env python3
"""Writes the quickstart dataset: train.jsonl (300), valid.jsonl (60), test.jsonl (60).

Small synthetic chat tasks a tiny model picks up within minutes on a CPU: the user asks for a
string transformation of a short lower-case word, the assistant answers with the result only.

    Reverse: cabd   ->  dbac
    Upper: cabd     ->  CABD
    Sort: cabd      ->  abcd

About a third of the samples carry a short system prompt. Every rendered sample stays under 64
tokens of the tiny tokenizer (one token per ASCII character). No prompt appears in two splits,
so the validation loss measures generalisation, not recall.

Deterministic without depending on Python's `random` (a fixed xorshift generator), so the files
are byte-identical on any Python 3. Usage, from the repository root:

    python3 datasets/quickstart/make.py           # (re)write the three files
    python3 datasets/quickstart/make.py --check   # verify the committed files are current
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = {"train": 300, "valid": 60, "test": 60}
LETTERS = "abcdefgh"
SYSTEMS = ["Be exact.", "Result only.", "Be brief."]
TASKS = {
    "Reverse": lambda w: w[::-1],
    "Upper": lambda w: w.upper(),
    "Sort": lambda w: "".join(sorted(w)),
}


class XorShift:
    """xorshift64*: tiny, fast, and the same on every platform."""

    def __init__(self, seed: int) -> None:
        self.state = seed or 1

    def next(self) -> int:
        x = self.state
        x ^= (x >> 12) & 0xFFFFFFFFFFFFFFFF
        x ^= (x << 25) & 0xFFFFFFFFFFFFFFFF
        x ^= (x >> 27) & 0xFFFFFFFFFFFFFFFF
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF

    def below(self, n: int) -> int:
        return (self.next() >> 11) % n


def sample(rng: XorShift) -> dict:
    word = "".join(LETTERS[rng.below(len(LETTERS))] for _ in range(3 + rng.below(4)))
    task = list(TASKS)[rng.below(len(TASKS))]
    messages = [{"role": "user", "content": f"{task}: {word}"}, {"role": "assistant", "content": TASKS[task](word)}]
    if rng.below(3) == 0:
        messages.insert(0, {"role": "system", "content": SYSTEMS[rng.below(len(SYSTEMS))]})
    return {"messages": messages}


def build() -> dict[str, str]:
    rng = XorShift(20240607)
    seen: set[str] = set()
    out = {}
    for split, count in SPLITS.items():
        lines = []
        while len(lines) < count:
            s = sample(rng)
            prompt = s["messages"][-2]["content"]
            if prompt in seen:
                continue
            seen.add(prompt)
            lines.append(json.dumps(s, ensure_ascii=False))
        out[split] = "\n".join(lines) + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = ap.parse_args()
    stale = []
    for split, text in build().items():
        path = HERE / f"{split}.jsonl"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(HERE.parent.parent)} ({text.count(chr(10))} lines)")
    if stale:
        print("out of date: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
