#!/usr/bin/env bash
# gemma4-tune vs transformers + PEFT on the same GPU, preset and settings, one after the other.
#
#   tests/reference/bench_compare.sh OUTDIR --model e2b --batch 4 --seq 2048 --rank 16 [--gradient-checkpointing]
#
# Writes OUTDIR/{ours,[ours2,]peft}.json (+ .log, and .mem: nvidia-smi samples of device memory in use,
# every 0.2 s) and prints both side by side. The binary is $G4T (default: gemma4-tune on PATH);
# dtypes: $OURS_DTYPE (default f16: Burn's Vulkan path has no bf16) and $PEFT_DTYPE (default bf16).
# $SKIP_PEFT=1 or $SKIP_OURS=1 runs one side only; $OURS_ARGS / $PEFT_ARGS add tool-specific
# flags (e.g. OURS_ARGS="--backend cpu" PEFT_ARGS="--device cpu" for a CPU smoke run). Needs python3 with torch, transformers 5.24 and
# peft 0.21 (tests/reference/requirements.txt) for the baseline.
set -uo pipefail
out=$1
shift
G4T=${G4T:-gemma4-tune}
PY=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

sampled() { # TAG CMD...: run CMD while sampling the GPU's memory in use into OUTDIR/TAG.mem
  local tag=$1
  shift
  (while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; sleep 0.2; done) >"$out/$tag.mem" &
  local sampler=$!
  "$@" >"$out/$tag.json.tmp" 2>"$out/$tag.log"
  local rc=$?
  kill "$sampler" 2>/dev/null
  if [ $rc -eq 0 ]; then mv "$out/$tag.json.tmp" "$out/$tag.json"; else echo "$tag failed (exit $rc):" && tail -5 "$out/$tag.log"; fi
  return 0
}

[ "${SKIP_OURS:-0}" = 1 ] || sampled ours "$G4T" bench --dtype "${OURS_DTYPE:-f16}" ${OURS_ARGS:-} "$@"
# A second build of ours in the same call (e.g. the Vulkan build beside the CUDA one): $G4T2,
# with $OURS2_DTYPE (default f16) and $OURS2_ARGS.
[ -z "${G4T2:-}" ] || sampled ours2 "$G4T2" bench --dtype "${OURS2_DTYPE:-f16}" ${OURS2_ARGS:-} "$@"
[ "${SKIP_PEFT:-0}" = 1 ] || sampled peft "$PY" "$here/bench_peft.py" --dtype "${PEFT_DTYPE:-bf16}" ${PEFT_ARGS:-} "$@"

"$PY" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(tag):
    p = os.path.join(out, tag + ".json")
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    mem = [int(x) for x in open(os.path.join(out, tag + ".mem")).read().split() if x.isdigit()] if os.path.exists(os.path.join(out, tag + ".mem")) else []
    r["smi_peak_gib"] = (max(mem) - min(mem)) / 1024 if mem else None
    return r
rows = [("train tokens/s", ("train", "tokens_per_s")), ("train step (s)", ("train", "step_s")), ("train TFLOP/s", ("train", "tflops")),
        ("loss first", ("train", "loss_first")), ("loss last", ("train", "loss_last")),
        ("prefill tokens/s", ("prefill", "tokens_per_s")), ("decode tokens/s", ("decode", "tokens_per_s")),
        ("peak memory (GiB, tool)", ("memory", "peak_gib")), ("peak memory (GiB, nvidia-smi)", ("smi_peak_gib",))]
tools = [(t, load(t)) for t in ("ours", "ours2", "peft") if t != "ours2" or load(t) is not None]
def get(r, path):
    for k in path:
        if r is None or not isinstance(r, dict):
            return None
        r = r.get(k)
    return r
fmt = lambda v: "-" if v is None else (f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}")
s = next((r["settings"] for _, r in tools if r), {})
print(f"| {s.get('batch')}x{s.get('seq')} r{s.get('rank')} ckpt={s.get('gradient_checkpointing')} | " + " | ".join(f"{t} ({get(r, ('settings', 'dtype'))})" for t, r in tools) + " | ours/peft |")
print("|---|" + "---|" * (len(tools) + 1))
for name, path in rows:
    vals = [get(r, path) for _, r in tools]
    pair = (vals[0], vals[-1])
    ratio = pair[0] / pair[1] if all(isinstance(v, (int, float)) and v for v in pair) else None
    print(f"| {name} | " + " | ".join(fmt(v) for v in vals) + f" | {fmt(ratio)} |")
PY
