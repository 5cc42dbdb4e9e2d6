#!/usr/bin/env python3
"""llama.cpp as the referee of the k-quant exports (issue 18): the real Gemma 3 270M Q4_K_M
(PyPI, tests/reference/fetch_gemma3_270m.sh) written again by `fuse --gguf --quant q4_k_m|q6_k`
(no adapter), loaded in llama.cpp (llama-cpp-python, requirements-gguf.txt), and compared as
gguf_export.py compares every case: logits against ours on the source and on the export itself
(our reader reads the Gemma 3 GGUF we write), 20 greedy tokens, llama.cpp's load warnings; and
llama.cpp on the export against llama.cpp on the PyPI file.

Usage (from the repo root): .venv-gguf/bin/python tests/reference/gguf_kquants.py --bin BIN
Prints one JSON line per case and exits non-zero if one is out of its bounds.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_export import BASE, FIX, compare  # noqa: E402
from gguf_ref import llama, rel_l2, run, st_read  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="a built gemma4-tune")
    args = p.parse_args()
    ids = st_read(FIX / "gemma3_270m/golden.safetensors")["p1.input_ids"][0].tolist()
    base_ll, base_cont, _ = llama(BASE, ids)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for q in ["q4_k_m", "q6_k"]:
            g = Path(d) / f"270m-{q}.gguf"
            run([args.bin, "fuse", "--model", BASE, "--gguf", g, "--quant", q, "--force"])
            r, ll = compare(args.bin, f"gemma3-270m/{q}", g, ids, BASE, quant=q, on_file=g)
            same = sum(a == b for a, b in zip(ll.argmax(-1), base_ll.argmax(-1)))
            print(json.dumps({"case": r["case"], "llama_export_vs_llama_pypi_rel_l2": rel_l2(ll, base_ll),
                              "argmax_equal": f"{same}/{len(ids)}", "ok": r["ok"]}), flush=True)
            ok = ok and r["ok"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
