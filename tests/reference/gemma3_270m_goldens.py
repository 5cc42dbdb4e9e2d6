#!/usr/bin/env python3
"""Reference logits of the real Gemma 3 270M (Q4_K_M GGUF) for a few real prompts.

Needs `tests/reference/fetch_gemma3_270m.sh` first (models/gemma3-270m/: the GGUF and the real
tokenizer.json). transformers 5.24 loads the same GGUF (`gguf_file=`, dequantised to float32,
eager attention); prompts are tokenised with the real tokenizer (`<bos>` first).

Writes tests/fixtures/gemma3_270m/golden.safetensors (small: the full [T, 262144] logits would
be ~1 MB per position), per prompt i:
  p{i}.input_ids     i64 [1, T]
  p{i}.logits_subset f32 [T, S]  logits at the vocabulary ids `vocab_subset`
  p{i}.top_ids       i64 [T, 10] top-10 ids per position (full vocabulary)
  p{i}.loss          f32 [1]     mean next-token CE (full vocabulary)
and `vocab_subset` i64 [S]: 4096 fixed random ids ∪ every top-10 id.

Usage: python tests/reference/gemma3_270m_goldens.py [--model-dir models/gemma3-270m]
"""

import argparse
import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
GGUF = "gemma-3-270m-q4_k_m.gguf"
PROMPTS = [
    "The capital of France is",
    "SELECT name FROM employees WHERE salary > 50000 AND department = 'Sales'",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
]
torch.set_num_threads(4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "gemma3-270m")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "gemma3_270m" / "golden.safetensors")
    args = ap.parse_args()
    tok = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(str(args.model_dir), gguf_file=GGUF, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    print(model.config)
    out, tops = {}, []
    for i, text in enumerate(PROMPTS):
        ids = tok.encode(text).ids
        if ids[0] != 2:
            ids = [2] + ids
        x = torch.tensor([ids])
        with torch.no_grad():
            o = model(input_ids=x, labels=x)
        logits = o.logits[0].float()
        out[f"p{i}.input_ids"] = x
        out[f"p{i}.loss"] = o.loss.float().reshape(1)
        out[f"p{i}.top_ids"] = logits.topk(10, dim=-1).indices
        out[f"_logits{i}"] = logits
        tops.append(out[f"p{i}.top_ids"].flatten())
        print(i, len(ids), "loss", o.loss.item(), "next:", repr(tok.decode([int(logits[-1].argmax())])))
    gen = torch.Generator().manual_seed(270)
    subset = torch.unique(torch.cat([torch.randint(0, logits.shape[-1], (4096,), generator=gen)] + tops))
    out["vocab_subset"] = subset
    for i in range(len(PROMPTS)):
        out[f"p{i}.logits_subset"] = out.pop(f"_logits{i}")[:, subset].contiguous()
    meta = {"info": json.dumps({"gguf": GGUF, "transformers_version": transformers.__version__,
                                "torch_version": torch.__version__, "prompts": PROMPTS})}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(args.out), metadata=meta)
    print("wrote", args.out, args.out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
