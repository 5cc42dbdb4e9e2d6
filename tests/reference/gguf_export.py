#!/usr/bin/env python3
"""llama.cpp as the referee of our GGUF exports (issue 18).

For each case this script writes a GGUF with our binary (`fuse --gguf`, `export-adapter`),
loads it in llama.cpp (llama-cpp-python, pinned in requirements-gguf.txt), runs the same token
ids through both, and compares:
  - logits, relative L2 over every position and vocabulary id, against two of ours
    (gguf_ref.py): ours (f32, the weights as trained) and ours on the file's weights. Bounds:
    llama.cpp vs ours <= max(1e-2, 2 x what the format alone costs ours); llama.cpp vs ours on
    the file's weights <= gguf_ref.ARITH (llama.cpp's own arithmetic, per weight type);
  - the bytes of every quantised tensor against gguf-py's encoders (llama.cpp's converter's) on
    our f32 export of the same model;
  - greedy: llama.cpp decodes 20 tokens greedily; our model, teacher-forced on prompt +
    continuation, must pick the same token at each of those 20 steps (f32/f16/bf16);
  - load log: every llama.cpp WARN/ERROR line while loading; one about a tensor or a key fails.

Cases: the tiny Gemma 4 (`dense`, `e2b_like`: PLE, KV sharing, double-wide MLP) and Gemma 3
(`gemma3_dense`) fixtures, fused as f32/f16/bf16/q8_0/q4_0, with their PEFT adapters fused and as
`--lora` adapters on the f32 base export, and with a Hugging Face tokenizer.json converted
(gguf_tokenizer.py). With --real ADAPTER: the real Gemma 3 270M Q4_K_M after a short LoRA run,
fused, and the adapter GGUF on the original Q4_K_M file and on f32/f16 exports of it.

Writes tests/fixtures/gguf_export/results.json (every figure), llama.safetensors (llama.cpp's
logits per fixture case, and an FNV-1a 64 hash of each exact file it ran) and
tokenization.json, which crates/gemma4-tune/tests/gguf_export.rs and gguf_vocab.rs check
without llama.cpp.

Usage (from the repo root; BIN is a built gemma4-tune):
  python tests/reference/gguf_export.py --bin target/release/gemma4-tune [--real ADAPTER_DIR]
"""

import argparse
import hashlib
import json
import re
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np

import gguf_tokenizer
from gguf_ref import (EXACT, GREEDY, Refused, bytes_like_gguf_py, fnv1a64, llama, measure, ours,
                      rel_l2, rounded_copy, run, st_read, st_write)

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests/fixtures"
OUT = FIX / "gguf_export"
BASE = REPO / "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
QUANTS = ["f32", "f16", "bf16", "q8_0", "q4_0"]


def compare(bin_, name, gguf, ids, model, adapter=None, lora=None, quant="f32", on_file=None):
    """llama.cpp on `gguf` (+ `lora`) against our `model` (+ `adapter`) and, where the file
    rounds our weights, against our model on the file's weights (`on_file`, a checkpoint)."""
    t0 = time.time()
    ll, cont, warns = llama(gguf, ids, lora)
    ref = ours(bin_, model, ids + cont, adapter)
    # A fused file holds the merge; a file run with --lora gets the adapter on ours too.
    file_ref = ours(bin_, on_file, ids, adapter if lora else None) if on_file else None
    r, ok = measure(ll, ref[: len(ids)], file_ref, quant)
    # Teacher-forced greedy: our argmax after prompt + cont[:k] must be cont[k].
    picks = ref[len(ids) - 1 : len(ids) - 1 + GREEDY].argmax(-1).tolist()
    agree = next((k for k, (a, b) in enumerate(zip(picks, cont)) if a != b), GREEDY)
    # llama.cpp warns about things that are not faults (no vocab: dummy tokens; SWA cache
    # size); a warning about a tensor or a key is one.
    bad = [w for w in warns if re.search(r"tensor|key|unknown|missing|unused", w, re.I)]
    ok = ok and (agree == GREEDY or quant not in EXACT) and not bad
    r = {"case": name, **r, "greedy_agree": agree, "warnings": warns, "ok": ok,
         "seconds": round(time.time() - t0, 1), "file": str(gguf.name),
         "sha256": hashlib.sha256(gguf.read_bytes()).hexdigest()}
    print(json.dumps({k: v for k, v in r.items() if k not in ("sha256", "warnings")}), flush=True)
    return r, ll


def fused_f32(bin_, model, adapter, out):
    """The merged checkpoint in f32 (`fuse --out`): the weights a fused export rounds."""
    run([bin_, "fuse", "--model", model, "--adapter", adapter, "--out", out, "--dtype", "f32", "--force"])
    return out


def fixture_cases(bin_, fx, tmp, goldens, meta):
    model, peft = FIX / fx, FIX / fx / "peft"
    ids = st_read(model / "golden.safetensors")["input_ids"][0].tolist()[:16]
    goldens[f"{fx}.input_ids"] = np.array(ids, dtype=np.int64)
    cases = [(q, None, q) for q in QUANTS]
    if peft.is_dir():
        cases += [("fused_lora_f32", peft, "f32"), ("fused_lora_q8_0", peft, "q8_0")]
    results = []
    for case, adapter, q in cases:
        g = tmp / f"{fx}-{case}.gguf"
        try:
            run([bin_, "fuse", "--model", model, "--gguf", g, "--quant", q, "--force"]
                + (["--adapter", adapter] if adapter else []))
        except Refused as e:
            # What llama.cpp cannot represent is refused before writing: recorded, not run.
            print(json.dumps({"case": fx, "refused": str(e)}), flush=True)
            return [{"case": fx, "refused": str(e), "ok": True}]
        on_file = None
        if q != "f32":
            src = fused_f32(bin_, model, adapter, tmp / f"{fx}-{case}-fused") if adapter else model
            on_file = rounded_copy(src, q, tmp / f"{fx}-{case}-rounded")
        r, ll = compare(bin_, f"{fx}/{case}", g, ids, model, adapter, quant=q, on_file=on_file)
        if q != "f32":
            r["bytes_unlike_gguf_py"] = bytes_like_gguf_py(tmp / f"{fx}-{case.replace(q, 'f32')}.gguf", g)
            r["ok"] = r["ok"] and not r["bytes_unlike_gguf_py"]
        results.append(r)
        goldens[f"{fx}.{case}.logits"] = ll.astype(np.float32)
        meta[f"{fx}.{case}.fnv1a64"] = fnv1a64(g.read_bytes())
    if peft.is_dir():
        lora = tmp / f"{fx}-adapter.gguf"
        run([bin_, "export-adapter", "--model", model, "--adapter", peft, "--gguf", lora, "--force"])
        r, ll = compare(bin_, f"{fx}/lora_on_f32", tmp / f"{fx}-f32.gguf", ids, model, peft, lora)
        r["adapter_sha256"] = hashlib.sha256(lora.read_bytes()).hexdigest()
        results.append(r)
        goldens[f"{fx}.lora_on_f32.logits"] = ll.astype(np.float32)
        meta[f"{fx}.lora_on_f32.fnv1a64"] = fnv1a64(lora.read_bytes())
    return results


def fixtures(bin_, tmp):
    results, goldens, meta = [], {}, {}
    for fx in ["dense", "e2b_like", "gemma3_dense"]:
        results += fixture_cases(bin_, fx, tmp, goldens, meta)
    st_write(OUT / "llama.safetensors", goldens, meta)
    return results


def real(bin_, tmp, adapter):
    """The fused 270M: our reader reads the Gemma 3 GGUF we write, so ours on the file's
    weights is our model on the export itself."""
    ids = st_read(FIX / "gemma3_270m/golden.safetensors")["p1.input_ids"][0].tolist()
    results = []
    for q in ["f32", "f16", "bf16", "q8_0"]:
        g = tmp / f"270m-fused-{q}.gguf"
        run([bin_, "fuse", "--model", BASE, "--adapter", adapter, "--gguf", g, "--quant", q, "--force"])
        on_file = g if q != "f32" else None
        r, _ = compare(bin_, f"gemma3-270m/fused_{q}", g, ids, BASE, adapter, quant=q, on_file=on_file)
        if q != "f32":
            r["bytes_unlike_gguf_py"] = bytes_like_gguf_py(tmp / "270m-fused-f32.gguf", g)
            r["ok"] = r["ok"] and not r["bytes_unlike_gguf_py"]
        results.append(r)
    return results


def real_lora(bin_, tmp, adapter):
    """The adapter GGUF with --lora. On the Q4_K_M file itself llama.cpp's k-quant dot products
    (activations in Q8_K) put it 3e-2 from ours with or without the adapter, so the adapter's own
    part is checked twice more: llama.cpp's (base+lora) - base against ours, and the same adapter
    GGUF on our f32 and f16 exports of that base, where 1e-2 must hold."""
    ids = st_read(FIX / "gemma3_270m/golden.safetensors")["p1.input_ids"][0].tolist()
    lora = tmp / "270m-adapter.gguf"
    run([bin_, "export-adapter", "--model", BASE, "--adapter", adapter, "--gguf", lora, "--force"])
    base, ll_base = compare(bin_, "gemma3-270m/q4_k_m (no adapter)", BASE, ids, BASE, quant="q4_k_m")
    both, ll_both = compare(bin_, "gemma3-270m/q4_k_m+lora", BASE, ids, BASE, adapter, lora, quant="q4_k_m")
    ours_base, ours_both = ours(bin_, BASE, ids), ours(bin_, BASE, ids, adapter)
    n = len(ids)
    both["adapter_effect_rel_l2"] = rel_l2(ours_both, ours_base)
    both["adapter_delta_rel_l2"] = rel_l2(ll_both - ll_base, ours_both[:n] - ours_base[:n])
    print(json.dumps({k: both[k] for k in ("adapter_effect_rel_l2", "adapter_delta_rel_l2")}), flush=True)
    results = [base, both]
    for q in ["f32", "f16"]:
        g = tmp / f"270m-base-{q}.gguf"
        run([bin_, "fuse", "--model", BASE, "--gguf", g, "--quant", q, "--force"])
        r, _ = compare(bin_, f"gemma3-270m/{q} export + lora", g, ids, BASE, adapter, lora, quant=q,
                       on_file=None if q == "f32" else g)
        results.append(r)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--real", help="adapter dir of a LoRA run on the real Gemma 3 270M")
    ap.add_argument("--skip-fixtures", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    res_path = OUT / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    res.pop("gemma3_270m_base", None)  # earlier layout: now in gemma3_270m_lora
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res["llama_cpp_python"] = llama_cpp.__version__
        if not a.skip_fixtures:
            res["fixtures"] = fixtures(a.bin, tmp)
            res["tokenizer"] = gguf_tokenizer.fixtures(a.bin, tmp)
        if a.real:
            res["gemma3_270m"] = real(a.bin, tmp, a.real)
            res["gemma3_270m_lora"] = real_lora(a.bin, tmp, a.real)
            res["tokenizer_270m"] = gguf_tokenizer.real(a.bin, tmp)
    res_path.write_text(json.dumps(res, indent=1) + "\n")
    keys = ("fixtures", "tokenizer", "gemma3_270m", "gemma3_270m_lora", "tokenizer_270m")
    bad = [r["case"] for k in keys for r in res.get(k, []) if not r["ok"]]
    print("FAILED: " + ", ".join(bad) if bad else "all cases within tolerance", flush=True)


if __name__ == "__main__":
    main()
