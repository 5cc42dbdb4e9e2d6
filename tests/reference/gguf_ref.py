"""Helpers of tests/reference/gguf_export.py: safetensors without the package, our binary, llama.cpp
through llama-cpp-python, and the two references llama.cpp is compared with.

- ours: our f32 model on the weights as trained (+ adapter), the model the user has;
- ours on the file's weights: every matrix rounded as the export writes it (gguf-py's
  quantize + dequantize, llama.cpp's own reference encoders) or, for a GGUF our reader reads
  (Gemma 3), the export itself. llama.cpp against this leaves only llama.cpp's arithmetic: it
  rounds the activations to the weight type for its dot products (f16 for F16, bf16 for BF16,
  Q8_0 blocks for Q8_0/Q4_0, Q8_K for k-quants), keeps K/V in f16 and takes GELU from an f16
  table.
"""

import ctypes
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

GREEDY = 20
# llama.cpp against ours on the file's weights (its own arithmetic), per weight type.
ARITH = {"f32": 1e-2, "f16": 1e-2, "bf16": 2e-2, "q8_0": 5e-2, "q4_0": 5e-2, "q4_k_m": 5e-2,
         "q6_k": 5e-2}
# Greedy agreement (20 of 20) is required where the weights keep at least bf16 precision.
EXACT = {"f32", "f16", "bf16"}
QTYPE = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
         "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
         "q4_0": gguf.GGMLQuantizationType.Q4_0}

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


def _round(v, quant):
    """A tensor as the `quant` export holds it: 1-D stays f32; a matrix whose rows are not whole
    blocks is F16 (llama.cpp's converter's fallback, and ours)."""
    if v.ndim < 2:
        return v.astype(np.float32)
    t = QTYPE[quant]
    if v.shape[-1] % gguf.GGML_QUANT_SIZES[t][0]:
        t = QTYPE["f16"]
    q = gguf.quants.quantize(v.astype(np.float32), t)
    return gguf.quants.dequantize(q, t).reshape(v.shape).astype(np.float32)


def rounded_copy(src, quant, dst):
    """The checkpoint directory `src` (one f32 model.safetensors) with each matrix rounded as
    the `quant` export writes it: our model on this is ours on the file's weights."""
    dst = Path(dst)
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in Path(src).glob("*.json"):
        shutil.copy(f, dst / f.name)
    t = st_read(Path(src) / "model.safetensors")
    st_write(dst / "model.safetensors", {k: _round(v, quant) for k, v in t.items()}, {})
    return dst


def bytes_like_gguf_py(f32_export, export):
    """Tensors of `export` whose bytes differ from gguf-py's quantize (llama.cpp's converter's
    encoders) applied to the same tensor of our f32 export of the same model: [] if none."""
    src = {t.name: t for t in gguf.GGUFReader(f32_export).tensors}
    bad = []
    for t in gguf.GGUFReader(export).tensors:
        want = gguf.quants.quantize(np.asarray(src[t.name].data, dtype=np.float32), t.tensor_type)
        if want.tobytes() != np.asarray(t.data).tobytes():
            bad.append(t.name)
    return bad


def measure(ll, ref, on_file, quant):
    """The figures of a case and whether they are within the stated bounds. With `on_file` (ours
    on the file's weights, when the file rounds ours): llama.cpp vs ours <= max(1e-2, 2 x what
    the format alone costs ours), and llama.cpp vs ours on the file's weights <= ARITH[quant].
    Without (the file holds exactly the weights ours runs): llama.cpp vs ours <= ARITH[quant]."""
    total = rel_l2(ll, ref)
    if on_file is None:
        r = {"rel_l2": total, "format_rel_l2": 0.0, "llama_vs_file_rel_l2": total,
             "tolerance": ARITH[quant]}
        return r, total <= ARITH[quant]
    fmt, arith = rel_l2(on_file, ref), rel_l2(ll, on_file)
    bound = max(1e-2, 2 * fmt)
    r = {"rel_l2": total, "format_rel_l2": fmt, "llama_vs_file_rel_l2": arith, "tolerance": bound,
         "arith_tolerance": ARITH[quant]}
    return r, total <= bound and arith <= ARITH[quant]
