#!/usr/bin/env python3
"""A tiny SentencePiece-style tokenizer laid out like Gemma 3's tokenizer.json (issue 18).

256 ids, for the tiny fixtures (vocab_size 256): Gemma's special and added tokens (<pad> <eos>
<bos> <unk> special; <mask>, <unused0>, "\\n" and "▁▁" added but not special, as in Gemma), two
byte-fallback tokens (the UTF-8 bytes of "é"), "▁", letters, digits and punctuation, and the
rest BPE pieces learnt here on a few English sentences the way SentencePiece learns them (most
frequent pair inside a word, "▁" starting a word; piece i scores -i). The merges are written as
transformers' SentencePieceExtractor writes them from a SentencePiece model: every split of a
piece into two pieces, ordered by the score of the piece they make. Normalizer, pre-tokenizer,
post-processor and decoder are Gemma 3's.

Writes tests/fixtures/gguf_export/tokenizer/{tokenizer.json,tokenizer_config.json}. Pure Python.
"""

import json
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/gguf_export/tokenizer"
CORPUS = """The quick brown fox jumps over the lazy dog. A table of cities and their populations.
Select the name of the player whose team won the cup in the year after the war.
What is the total number of points scored by the home team? Show the results, then stop.
Which school did the winner attend, and where is it? Count the rows where the value is over ten.
The model reads the question, thinks, and writes the answer in one line of text."""
FIXED = [("<pad>", True), ("<eos>", True), ("<bos>", True), ("<unk>", True), ("<mask>", False),
         ("<start_of_turn>", True), ("<end_of_turn>", True), ("<unused0>", False), ("\n", False),
         ("▁▁", False)]
BYTES = ["<0xC3>", "<0xA9>"]
CHARS = (["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
         + [chr(c) for c in range(ord("A"), ord("Z") + 1)] + list("0123456789") + list(".,!?'-:()\""))
SIZE = 256


def learn(pieces):
    """SentencePiece-style BPE: words start with ▁ (except a line's first), merges stay inside."""
    words = Counter()
    for line in CORPUS.splitlines():
        for k, w in enumerate(line.split(" ")):
            words[tuple(("▁" if k else "") + w)] += 1
    known = set(pieces)
    while len(pieces) < SIZE:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                if a + b not in known:
                    pairs[(a, b)] += n
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], -len(kv[0][0] + kv[0][1])))
        pieces.append(a + b)
        known.add(a + b)
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return pieces


def extractor_merges(pieces, user_defined):
    """transformers' SentencePieceExtractor: every (left, right) split of a piece, by score."""
    vocab = {p: i for i, p in enumerate(pieces)}
    score = {p: (0.0 if p in user_defined else -float(i)) for i, p in enumerate(pieces)}
    merges = []
    for piece in pieces:
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges += [(l, r, score[piece]) for l, r in sorted(local, key=lambda p: (vocab[p[0]], vocab[p[1]]))]
    merges.sort(key=lambda m: m[2], reverse=True)
    return [[l, r] for l, r, _ in merges]


def main():
    pieces = learn([t for t, _ in FIXED] + BYTES + CHARS)
    user_defined = {t for t, special in FIXED if not special}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": special} for i, (t, special) in enumerate(FIXED)]
    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "post_processor": {"type": "TemplateProcessing", "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {p: i for i, p in enumerate(pieces)},
                  "merges": extractor_merges(pieces, user_defined)},
    }
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
              "pad_token": "<pad>", "unk_token": "<unk>", "tokenizer_class": "GemmaTokenizer",
              "chat_template": "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                               "{{ m['content'] }}<end_of_turn>\n{% endfor %}"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n")
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(pieces)} tokens, {len(tok['model']['merges'])} merges -> {OUT}")


if __name__ == "__main__":
    main()
