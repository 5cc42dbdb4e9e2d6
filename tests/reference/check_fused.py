"""Check that checkpoints written by `gemma4-tune fuse` load in transformers as-is and give the
adapter's logits (PEFT's `lora_logits` for the fixture adapters).

    cargo run -p gemma4-tune -- fuse --model tests/fixtures/moe_keqv --adapter tests/fixtures/moe_keqv/peft --out /tmp/fused --dtype f32
    .venv/bin/python tests/reference/check_fused.py /tmp/fused tests/fixtures/moe_keqv
"""
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file


def main(fused: str, fixture: str) -> int:
    transformers.logging.set_verbosity_error()
    fused, fixture = Path(fused), Path(fixture)
    cfg = transformers.AutoConfig.from_pretrained(fused)
    cls = transformers.Gemma4ForConditionalGeneration if cfg.model_type == "gemma4" else transformers.AutoModelForCausalLM
    model, info = cls.from_pretrained(fused, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    missing, unexpected = info["missing_keys"], info["unexpected_keys"]
    assert not missing and not unexpected, (missing, unexpected)
    golden = load_file(fixture / "peft" / "golden.safetensors")
    with torch.no_grad():
        logits = model.eval()(input_ids=golden["input_ids"]).logits.float()
    rel = ((logits - golden["lora_logits"]).norm() / golden["lora_logits"].norm()).item()
    print(f"{fused}: loads with no missing/unexpected keys; logits vs PEFT lora_logits: relative L2 {rel:.2e}")
    return 0 if rel < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
