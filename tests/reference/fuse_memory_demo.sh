#!/usr/bin/env bash
# Fuse a checkpoint larger than the memory the process may use (cgroup v1 memory limit; root).
# Base: the `dense` fixture with a 262,144-token vocabulary (68 MB of f32 tensors); limit: 32 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$(mktemp -d); out=$(mktemp -d)/fused
.venv/bin/python - "$base" <<'PY'
import json, sys, torch
from safetensors.torch import load_file, save_file
dst = sys.argv[1]; src = "tests/fixtures/dense"; V = 262144
cfg = json.load(open(f"{src}/config.json")); cfg["vocab_size"] = V
json.dump(cfg, open(f"{dst}/config.json", "w"), indent=2)
t = load_file(f"{src}/model.safetensors"); e = t["model.embed_tokens.weight"]
big = torch.randn(V, e.shape[1], generator=torch.Generator().manual_seed(0)) * 0.02; big[: e.shape[0]] = e
t["model.embed_tokens.weight"] = big
save_file(t, f"{dst}/model.safetensors", metadata={"format": "pt"})
PY
cg=/sys/fs/cgroup/memory/gemma4-fuse-demo; mkdir -p $cg; echo $((32*1024*1024)) > $cg/memory.limit_in_bytes
bash -c "echo \$\$ > $cg/cgroup.procs; exec ./target/debug/gemma4-tune fuse --model $base --adapter tests/fixtures/dense/peft --out $out"
echo "checkpoint $(du -sh $base/model.safetensors | cut -f1), limit 32 MiB, peak $(($(cat $cg/memory.max_usage_in_bytes)/1048576)) MiB (page cache included, reclaimed under the limit)"
