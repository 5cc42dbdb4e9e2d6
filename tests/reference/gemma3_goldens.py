#!/usr/bin/env python3
"""Golden fixtures for Gemma 3 text through the Gemma 4 model code.

Tiny random-weight `Gemma3ForCausalLM` checkpoints (transformers 5.24, CPU, float32, eager
attention), same directory contract and `golden.safetensors` format as `generate.py` (see
tests/fixtures/README.md; no PLE, so no `per_layer_inputs`):

* `gemma3_dense`   — legacy spelling: `sliding_window_pattern` 3 over 5 layers (S S F S S: the last
  layer stays sliding, Gemma 3 does not force it), `rope_theta` / `rope_local_base_freq` and
  `rope_scaling` linear ×8 on full layers, `query_pre_attn_scalar` ≠ head_dim, GQA, tied head.
* `gemma3_untied`  — `rope_parameters` spelling, untied head, attention biases, final softcap,
  bf16 on disk.

Stored RMSNorm weights w are drawn so that both w and the applied scale 1 + w are far from 0 and 1.

Usage: python tests/reference/gemma3_goldens.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

REPO = Path(__file__).resolve().parents[2]
S, F = "sliding_attention", "full_attention"
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=2,
              eos_token_id=1, max_position_embeddings=4096)

FIXTURES = {
    "gemma3_dense": dict(seed=3001, T=24, disk_dtype=torch.float32, text=dict(
        COMMON, num_hidden_layers=5, sliding_window_pattern=3, sliding_window=6, query_pre_attn_scalar=24,
        rope_theta=50_000.0, rope_local_base_freq=100.0, rope_scaling={"rope_type": "linear", "factor": 8.0}),
        legacy_config=True),
    "gemma3_untied": dict(seed=3002, T=20, disk_dtype=torch.bfloat16, text=dict(
        COMMON, num_hidden_layers=4, layer_types=[S, F, S, F], sliding_window=5, query_pre_attn_scalar=16,
        tie_word_embeddings=False, attention_bias=True, final_logit_softcapping=5.0,
        rope_parameters={S: {"rope_type": "default", "rope_theta": 10_000.0},
                         F: {"rope_type": "linear", "factor": 4.0, "rope_theta": 1_000_000.0}})),
}


def two_band(gen, shape, lo=(0.3, 0.7), hi=(1.3, 1.9)):
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    pick = torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5
    return torch.where(pick, hi[0] + u * (hi[1] - hi[0]), lo[0] + u * (lo[1] - lo[0])).float()


def init_weights(model, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in sorted(model.named_parameters()):
            leaf, owner = name.split(".")[-1], name.split(".")[-2]
            if name == "lm_head.weight" and cfg.tie_word_embeddings:
                continue
            if "norm" in owner:
                # stored w in [-1.9, -1.5] ∪ [0.4, 0.9]: applied scale 1 + w in [-0.9, -0.5] ∪ [1.4, 1.9]
                new = two_band(gen, t.shape, (-1.9, -1.5), (0.4, 0.9))
            elif owner == "embed_tokens":
                new = torch.randn(t.shape, generator=gen)
            elif leaf == "bias":
                new = 0.3 * torch.randn(t.shape, generator=gen)
            elif leaf == "weight" and t.dim() == 2:
                new = torch.randn(t.shape, generator=gen) / math.sqrt(t.shape[1])
            else:
                raise RuntimeError(f"no init rule for {name}")
            t.copy_(new.to(t.dtype))


def make_inputs(vocab, T, seed):
    gen = torch.Generator().manual_seed(seed + 17)
    ids = torch.randint(3, vocab, (2, T), generator=gen, dtype=torch.int64)
    ids[:, 0] = 2
    ids[0, T // 2: T // 2 + 4] = ids[0, 1:5]
    valid = T - 4
    pad_ids = ids.clone()
    pad_ids[1, valid:] = 0
    mask = torch.ones(2, T, dtype=torch.int64)
    mask[1, valid:] = 0
    return ids, pad_ids, mask, valid


def run(model, ids, mask=None):
    cap = {}
    tm = model.model
    hs = [tm.embed_tokens.register_forward_hook(lambda m, a, o: cap.__setitem__("embeddings", o.detach().clone()))]
    for i, layer in enumerate(tm.layers):
        hs.append(layer.register_forward_hook(lambda m, a, o, i=i: cap.__setitem__(f"layer_out.{i}", o.detach().clone())))
    hs.append(tm.norm.register_forward_hook(lambda m, a, o: cap.__setitem__("final_norm", o.detach().clone())))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, labels=ids if mask is None else None, use_cache=False)
    finally:
        for h in hs:
            h.remove()
    return out, cap


def generate(name, spec, root):
    d = root / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    cfg = Gemma3TextConfig(**spec["text"])
    model = Gemma3ForCausalLM(cfg).eval()
    init_weights(model, cfg, spec["seed"])
    model.to(spec["disk_dtype"]).save_pretrained(str(d))
    (d / "generation_config.json").unlink(missing_ok=True)
    rmodel = Gemma3ForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    c = rmodel.config
    ids, pad_ids, mask, valid = make_inputs(c.vocab_size, spec["T"], spec["seed"])
    out, cap = run(rmodel, ids)
    golden = {"input_ids": ids, "logits": out.logits.float(), "loss": out.loss.float().reshape(1), **cap}
    pout, _ = run(rmodel, pad_ids, mask)
    golden.update(pad_input_ids=pad_ids, pad_attention_mask=mask, pad_logits=pout.logits.float())
    meta = {"info": json.dumps({"fixture": name, "transformers_version": transformers.__version__,
                                "torch_version": torch.__version__, "pad_valid_len_row1": valid}, sort_keys=True)}
    save_file({k: v.contiguous() for k, v in golden.items()}, str(d / "golden.safetensors"), metadata=meta)
    if spec.get("legacy_config"):
        write_legacy_config(d, rmodel, ids)
    print(name, "layer_types", c.layer_types, "rope", c.rope_parameters, "loss", golden["loss"].item())


def write_legacy_config(d, rmodel, ids):
    """`config_legacy.json`: the pre-`rope_parameters` spelling real Gemma 3 checkpoints ship
    (`rope_theta`, `rope_local_base_freq`, `rope_scaling`, `sliding_window_pattern`, no
    `layer_types`); transformers must load it to bit-identical logits."""
    cfg = json.loads((d / "config.json").read_text())
    rp = cfg.pop("rope_parameters")
    for k in ("layer_types", "_sliding_window_pattern"):
        cfg.pop(k)
    cfg["rope_theta"] = rp[F]["rope_theta"]
    cfg["rope_local_base_freq"] = rp[S]["rope_theta"]
    cfg["rope_scaling"] = {"rope_type": "linear", "factor": rp[F]["factor"]}
    (d / "config_legacy.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    alt = Gemma3ForCausalLM.from_pretrained(str(d), config=Gemma3TextConfig.from_json_file(str(d / "config_legacy.json")),
                                            dtype=torch.float32, attn_implementation="eager").eval()
    assert alt.config.layer_types == rmodel.config.layer_types, alt.config.layer_types
    with torch.no_grad():
        assert torch.equal(alt(input_ids=ids).logits, rmodel(input_ids=ids).logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    args = ap.parse_args()
    for name, spec in FIXTURES.items():
        generate(name, spec, args.out)


if __name__ == "__main__":
    main()
