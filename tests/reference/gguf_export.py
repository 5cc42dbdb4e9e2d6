#!/usr/bin/env python3
"""llama.cpp as the referee of our GGUF exports (issue 18).

For each case this script writes a GGUF with our binary (`fuse --gguf`, `export-adapter`),
loads it in llama.cpp (llama-cpp-python, pinned in requirements-gguf.txt), runs the same token
ids through both, and compares:
  - logits: relative L2 ||llama - ours|| / ||ours|| over every position and vocabulary id;
  - greedy: llama.cpp decodes 20 tokens greedily; our model, teacher-forced on prompt +
    continuation, must pick the same token at each of those 20 steps (argmax agreement);
  - load log: every llama.cpp WARN/ERROR line while loading, recorded; one about a tensor or a
    key fails the case.

Cases: the tiny Gemma 4 (`dense`, `e2b_like`: PLE, KV sharing, double-wide MLP) and Gemma 3
(`gemma3_dense`) fixtures, fused as f32/f16/bf16/q8_0/q4_0, with their PEFT adapters fused and as
`--lora` adapters on the f32 base export; with --real, the real Gemma 3 270M Q4_K_M after a
short LoRA run: the fused export, and the adapter GGUF applied to the original Q4_K_M file.

Writes tests/fixtures/gguf_export/results.json (every figure) and, for the fixture cases,
tests/fixtures/gguf_export/llama.safetensors: llama.cpp's logits per case and, in the metadata,
an FNV-1a 64 hash of the exact file llama.cpp ran, so the Rust test (crates/gemma4-tune/tests/
gguf_export.rs) re-exports, checks the bytes are the same, and compares our logits with
llama.cpp's without llama.cpp installed.

Usage (from the repo root; BIN is a built gemma4-tune):
  python tests/reference/gguf_export.py --bin target/debug/gemma4-tune [--real ADAPTER_DIR]
"""

import argparse
import ctypes
import hashlib
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests/fixtures"
OUT = FIX / "gguf_export"
QUANTS = ["f32", "f16", "bf16", "q8_0", "q4_0"]
GREEDY = 20
# Stated tolerances (relative L2 of the logits, llama.cpp against ours, our model in f32).
# bf16 is 2e-2: on the tiny Gemma 4 fixture (softcap 5, random weights) rounding the weights to
# bf16 alone moves the logits by 1.6e-2; q8_0 and q4_0 are measured and recorded.
TOL = {"f32": 1e-2, "f16": 1e-2, "bf16": 2e-2, "q8_0": 1e-1, "q4_0": None, "lora": 1e-2}
# Greedy agreement (20 of 20) is required where the weights keep at least bf16 precision.
EXACT = {"f32", "f16", "bf16", "lora"}

LOG = []


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log(level, text, _user):
    LOG.append((level, text.decode("utf-8", "replace") if text else ""))


llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))


def st_write(path, tensors, metadata):
    """A safetensors file (f32 / i64 numpy arrays) without the safetensors package."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8 : 8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s : 8 + n + e], dtype=dt).reshape(v["shape"])
    return out


class Refused(Exception):
    pass


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0 and "llama.cpp cannot represent" in r.stderr:
        raise Refused(r.stderr.strip())
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def ours(bin_, model, ids, adapter=None):
    """Our logits [T, V] for one sequence (`logits` command; with an adapter, `lora_logits`)."""
    with tempfile.TemporaryDirectory() as d:
        st_write(f"{d}/in.safetensors", {"input_ids": np.array([ids], dtype=np.int64)}, {})
        cmd = [bin_, "logits", "--model", model, "--input", f"{d}/in.safetensors", "--out", f"{d}/o.safetensors"]
        if adapter:
            cmd += ["--adapter", adapter]
        run(cmd)
        o = st_read(f"{d}/o.safetensors")
        return o["lora_logits" if adapter else "logits"][0].astype(np.float64)


def llama(path, ids, lora=None):
    """llama.cpp's logits [T, V] for `ids`, its greedy continuation, and its load warnings."""
    LOG.clear()
    kw = {"lora_path": str(lora)} if lora else {}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_batch=256, logits_all=True,
                          n_threads=2, verbose=True, seed=0, **kw)
    warns = [t.strip() for lv, t in LOG if lv in (3, 4) and t.strip()]
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    cont = []
    for _ in range(GREEDY):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        cont.append(tok)
        llm.eval([tok])
    del llm
    return logits, cont, warns


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare(bin_, name, gguf, model, ids, adapter=None, lora=None, tol=None, exact=True):
    t0 = time.time()
    ll, cont, warns = llama(gguf, ids, lora)
    ref = ours(bin_, model, ids + cont, adapter)
    rel = rel_l2(ll, ref[: len(ids)])
    # Teacher-forced greedy: our argmax after prompt + cont[:k] must be cont[k].
    picks = ref[len(ids) - 1 : len(ids) - 1 + GREEDY].argmax(-1).tolist()
    agree = next((k for k, (a, b) in enumerate(zip(picks, cont)) if a != b), GREEDY)
    # llama.cpp warns about things that are not faults (no vocab: dummy tokens; SWA cache
    # size); a warning about a tensor or a key is one.
    bad = [w for w in warns if re.search(r"tensor|key|unknown|missing|unused", w, re.I)]
    ok = (tol is None or rel <= tol) and (agree == GREEDY or not exact) and not bad
    r = {"case": name, "rel_l2": rel, "tolerance": tol, "greedy_agree": agree, "warnings": warns,
         "ok": ok, "seconds": round(time.time() - t0, 1), "file": str(gguf.name),
         "sha256": hashlib.sha256(gguf.read_bytes()).hexdigest()}
    print(json.dumps({k: v for k, v in r.items() if k != "sha256"}), flush=True)
    return r, ll.astype(np.float32)


def fixtures(bin_, tmp):
    results, goldens, meta = [], {}, {}
    for fx in ["dense", "e2b_like", "gemma3_dense"]:
        model = FIX / fx
        ids = st_read(model / "golden.safetensors")["input_ids"][0].tolist()[:16]
        goldens[f"{fx}.input_ids"] = np.array(ids, dtype=np.int64)
        cases = [(q, None, q) for q in QUANTS]
        peft = model / "peft"
        if peft.is_dir():
            cases += [("fused_lora_f32", peft, "f32"), ("fused_lora_q8_0", peft, "q8_0")]
        for case, adapter, q in cases:
            g = tmp / f"{fx}-{case}.gguf"
            cmd = [bin_, "fuse", "--model", model, "--gguf", g, "--quant", q, "--force"]
            try:
                run(cmd + (["--adapter", adapter] if adapter else []))
            except Refused as e:
                # What llama.cpp cannot represent is refused before writing: recorded, not run.
                print(json.dumps({"case": fx, "refused": str(e)}), flush=True)
                results.append({"case": fx, "refused": str(e), "ok": True})
                break
            tol = TOL["lora"] if adapter and q == "f32" else TOL[q]
            r, ll = compare(bin_, f"{fx}/{case}", g, model, ids, adapter, tol=tol, exact=q in EXACT)
            results.append(r)
            goldens[f"{fx}.{case}.logits"] = ll
            meta[f"{fx}.{case}.fnv1a64"] = fnv1a64(g.read_bytes())
        if peft.is_dir() and (tmp / f"{fx}-f32.gguf").is_file():
            lora = tmp / f"{fx}-adapter.gguf"
            run([bin_, "export-adapter", "--model", model, "--adapter", peft, "--gguf", lora, "--force"])
            r, ll = compare(bin_, f"{fx}/lora_on_f32", tmp / f"{fx}-f32.gguf", model, ids, peft, lora, TOL["lora"])
            r["adapter_sha256"] = hashlib.sha256(lora.read_bytes()).hexdigest()
            results.append(r)
            goldens[f"{fx}.lora_on_f32.logits"] = ll
            meta[f"{fx}.lora_on_f32.fnv1a64"] = fnv1a64(lora.read_bytes())
    st_write(OUT / "llama.safetensors", goldens, meta)
    return results


def real(bin_, tmp, adapter):
    base = REPO / "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
    ids = st_read(FIX / "gemma3_270m/golden.safetensors")["p1.input_ids"][0].tolist()
    results = []
    lora = tmp / "270m-adapter.gguf"
    run([bin_, "export-adapter", "--model", base, "--adapter", adapter, "--gguf", lora, "--force"])
    r, _ = compare(bin_, "gemma3-270m/q4_k_m+lora", base, base, ids, adapter, lora, TOL["lora"])
    results.append(r)
    for q in ["f32", "f16", "bf16", "q8_0"]:
        g = tmp / f"270m-fused-{q}.gguf"
        run([bin_, "fuse", "--model", base, "--adapter", adapter, "--gguf", g, "--quant", q, "--force"])
        r, _ = compare(bin_, f"gemma3-270m/fused_{q}", g, base, ids, adapter, tol=TOL[q], exact=q in EXACT)
        results.append(r)
    return results


def real_base(bin_, adapter):
    """The base alone: how far llama.cpp's Q4_K_M arithmetic (activations quantised to Q8_K in
    its dot products) is from ours (Q4_K dequantised to f32), and how much the adapter moves
    our logits (so the LoRA cases' agreement means something)."""
    base = REPO / "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
    ids = st_read(FIX / "gemma3_270m/golden.safetensors")["p1.input_ids"][0].tolist()
    r, _ = compare(bin_, "gemma3-270m/q4_k_m (no adapter)", base, base, ids, tol=None)
    effect = rel_l2(ours(bin_, base, ids, adapter), ours(bin_, base, ids))
    r["adapter_effect_rel_l2"] = effect
    print(json.dumps({"adapter_effect_rel_l2": effect}), flush=True)
    # The same adapter GGUF on our f32 export of the base: the LoRA path without Q8_K.
    with tempfile.TemporaryDirectory() as d:
        g, lora = Path(d) / "270m-base-f32.gguf", Path(d) / "270m-adapter.gguf"
        run([bin_, "fuse", "--model", base, "--gguf", g, "--quant", "f32"])
        run([bin_, "export-adapter", "--model", base, "--adapter", adapter, "--gguf", lora])
        r2, _ = compare(bin_, "gemma3-270m/f32 export + lora", g, base, ids, adapter, lora, TOL["lora"])
    return [r, r2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--real", help="adapter dir of a LoRA run on the real Gemma 3 270M")
    ap.add_argument("--skip-fixtures", action="store_true")
    ap.add_argument("--real-base", help="adapter dir: only the base-alone comparison (real_base)")
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    res_path = OUT / "results.json"
    prev = json.loads(res_path.read_text()) if res_path.is_file() else {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = dict(prev)
        res["llama_cpp_python"] = llama_cpp.__version__
        if not a.skip_fixtures:
            res["fixtures"] = fixtures(a.bin, tmp)
        if a.real:
            res["gemma3_270m"] = real(a.bin, tmp, a.real)
        if a.real_base:
            res["gemma3_270m_base"] = real_base(a.bin, a.real_base)
    res_path.write_text(json.dumps(res, indent=1) + "\n")
    keys = ("fixtures", "gemma3_270m", "gemma3_270m_base")
    bad = [r["case"] for k in keys for r in res.get(k, []) if not r["ok"]]
    print("FAILED: " + ", ".join(bad) if bad else "all cases within tolerance", flush=True)


if __name__ == "__main__":
    main()
