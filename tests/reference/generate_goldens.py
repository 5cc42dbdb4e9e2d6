"""Greedy-generation goldens: transformers' `generate` (greedy, KV cache on) on every fixture.

Writes tests/fixtures/<name>/generate.safetensors with `prompt_ids` (i64 [1, P]) and
`greedy_ids` (i64 [1, N], the new tokens only). Deterministic; rerun:
    .venv/bin/python tests/reference/generate_goldens.py
"""
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
FIXTURES = ["dense", "e2b_like", "moe_keqv", "keqv_bias_untied", "multimodal", "per_layer_config"]
NEW_TOKENS = 12


def main() -> int:
    transformers.logging.set_verbosity_error()
    for name in FIXTURES:
        d = ROOT / name
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        if name == "multimodal":
            model = transformers.Gemma4ForConditionalGeneration.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        ids = load_file(d / "golden.safetensors")["input_ids"][:1, :10]
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                                 eos_token_id=None, pad_token_id=0, min_new_tokens=NEW_TOKENS)
        new = out[:, ids.shape[1]:].contiguous()
        assert new.shape[1] == NEW_TOKENS, new.shape
        save_file({"prompt_ids": ids.contiguous(), "greedy_ids": new}, d / "generate.safetensors", metadata={"format": "pt"})
        print(name, new.tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
