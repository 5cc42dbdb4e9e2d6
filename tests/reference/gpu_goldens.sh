#!/usr/bin/env bash
# The golden fixtures on a GPU backend: `gemma4-tune logits` on every fixture's golden input
# (and its PEFT adapter's), compared with transformers' logits (and PEFT's LoRA logits).
#
#   tests/reference/gpu_goldens.sh BACKEND DTYPE TOL      e.g.  cuda f32 1e-4   |   cuda bf16 3e-2
#
# Prints one line per comparison and exits non-zero if any relative L2 exceeds TOL or a run
# fails. The binary is $G4T (default: gemma4-tune on PATH).
set -uo pipefail
backend=$1 dtype=$2 tol=$3
G4T=${G4T:-gemma4-tune}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
worst=0 failed=0
check() { # LABEL ARGS...: run `logits ARGS`, check every relative L2 it prints against TOL
  local label=$1 out
  shift
  if ! out=$("$G4T" logits --backend "$backend" --dtype "$dtype" "$@" 2>&1); then
    echo "FAIL $label: logits exited non-zero"; echo "$out" | tail -3; failed=1; return
  fi
  local what err
  while read -r what err; do
    printf "%-24s %-12s %s\n" "$label" "$what" "$err"
    if python3 -c "import sys; sys.exit(0 if float('$err') <= $tol else 1)"; then :; else
      echo "FAIL $label $what: $err > $tol"; failed=1
    fi
  done < <(echo "$out" | sed -n 's/^relative L2 difference to the reference \([a-z_]*\) in .*: \(.*\)$/\1 \2/p')
}
for dir in "$fixtures"/*/; do
  name=$(basename "$dir")
  [ -f "$dir/golden.safetensors" ] && [ -f "$dir/config.json" ] || continue
  python3 -c "import json,struct,sys; b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]; sys.exit(0 if 'logits' in json.loads(b[8:8+n]) else 1)" "$dir/golden.safetensors" || continue
  check "$name" --model "$dir" --input "$dir/golden.safetensors"
  if [ -f "$dir/peft/golden.safetensors" ] && [ -f "$dir/peft/adapter_config.json" ]; then
    check "$name/peft" --model "$dir" --input "$dir/peft/golden.safetensors" --adapter "$dir/peft"
  fi
done
[ $failed = 0 ] && echo "all within $tol ($backend, $dtype)"
exit $failed
