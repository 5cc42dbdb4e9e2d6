"""Load the adapters our Rust code wrote (tests/fixtures/<name>/rust_adapter/, made by
`cargo test -p gemma4-lora --test rust_written -- --ignored`) into transformers + PEFT and
record PEFT's logits, so a Rust test checks that PEFT reproduces ours. Rerun:
    .venv/bin/python tests/reference/rust_adapter_goldens.py
"""
import sys
from pathlib import Path

import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
FIXTURES = ["moe_keqv", "multimodal", "e2b_like"]


def main() -> int:
    transformers.logging.set_verbosity_error()
    for name in FIXTURES:
        d = ROOT / name
        cls = transformers.Gemma4ForConditionalGeneration if name == "multimodal" else transformers.AutoModelForCausalLM
        base = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        golden = load_file(d / "golden.safetensors")
        ids = golden["input_ids"]
        model = PeftModel.from_pretrained(base, d / "rust_adapter").eval()
        # PEFT only logs missing keys: insist that every tensor we wrote was loaded.
        state = model.state_dict()
        written = load_file(d / "rust_adapter" / "adapter_model.safetensors")
        for k in written:
            peft_key = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
            assert peft_key in state, f"{name}: {k} not loaded by PEFT"
            assert torch.equal(state[peft_key], written[k]), f"{name}: {k} differs after loading"
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        rel = ((logits - golden["logits"]).norm() / golden["logits"].norm()).item()
        assert rel > 1e-3, f"{name}: adapter has no effect ({rel})"
        save_file({"input_ids": ids.contiguous(), "lora_logits": logits.contiguous(), "base_logits": golden["logits"].contiguous()},
                  d / "rust_adapter" / "peft_golden.safetensors", metadata={"format": "pt"})
        print(f"{name}: {len(written)} tensors loaded by PEFT; logits moved {rel:.3f} from base")
    return 0


if __name__ == "__main__":
    sys.exit(main())
