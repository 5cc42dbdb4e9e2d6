#!/usr/bin/env python3
"""Checkpoint layouts of the REAL Gemma 4 variants, recorded without allocating any weights.

For E2B, E4B, 26B-A4B and 31B this builds the multimodal `Gemma4ForConditionalGeneration`
on the `meta` device (no memory is allocated for weights), reproduces what the upstream
converter (`transformers/models/gemma4/convert_gemma4_weights.py`) + `save_pretrained`
would write, and stores, per variant, `tests/fixtures/real_layouts/<name>.json`:

    {"config":      <config.json exactly as save_pretrained writes it>,
     "tensors":     {<safetensors key>: [shape...]},      # tied lm_head not included
     "text_params": <sum of numel over model.language_model.* (+ lm_head.weight if saved)>}

One compact line of JSON per file (sorted keys, no indentation). Shapes only: the real
checkpoints store every tensor in bfloat16 (the converter's default `--*_dtype`).

Where the values come from
* Variant table: copied verbatim from `_VARIANTS` in upstream `convert_gemma4_weights.py`
  (huggingface/transformers, identical at commits 0f3f0632 and ca5ff0b0). The installed
  transformers 5.24.0 wheel does not ship the converter (it imports jax/orbax), so it cannot
  be imported. Text, vision and (E2B/E4B) audio configs are all the converter's; the audio
  config there is `Gemma4AudioConfig()` (transformers' defaults).
* Config post-processing mirrors the converter's `main()`: every sub-config gets
  `dtype=bfloat16`; `save_pretrained` sets the top-level `dtype` and `architectures`; the
  converter then sets the multimodal token ids from the tokenizer (constant ids, spec §6.1;
  note it writes `eoa_token_id` next to the config field `eoa_token_index`) and re-saves
  the config. This records the *base* (pre-trained) checkpoints: the `-it` converter run
  (`--include_chat_template`) additionally sets top-level `"eos_token_id": [1, 106]`.
* Tensor keys: `model.state_dict()` after the same save-time key handling as
  `PreTrainedModel.save_pretrained` (drop `_keys_to_ignore_on_save`, drop tied weights
  i.e. `lm_head.weight`, `revert_weight_conversion`). Non-persistent buffers (`embed_scale`,
  rotary `inv_freq`) are never saved; KV-shared layers have no `k_proj`/`v_proj`/`k_norm`.
  The converter itself passes its own converted Orbax tree as `state_dict=`; the module
  structure is what `load_state_dict(..., assign=True)` checks it against, so the two agree
  as long as the Orbax tree has no extra entries (early exports carried unused shared-layer
  K/V tensors, spec §7.4 step 6; HF ignores them on load).

The script also checks the result against the spec (`docs` gemma4-architecture.md §3, §7.3
shapes and the §1 parameter-count sanity check) and prints a per-variant summary. Any §3/§7.3
mismatch makes it exit 1 (after writing); §1 counts are approximate and only reported.

Usage (from the repository root, the venv of tests/reference/README.md):
    python tests/reference/real_layouts.py              # (re)write tests/fixtures/real_layouts/
    python tests/reference/real_layouts.py --check      # regenerate in memory, compare bytes
    python tests/reference/real_layouts.py --only e2b   # a subset (comma separated)
Deterministic: no random numbers, no weights, CPU only; output depends only on the pinned
transformers/torch versions (requirements.txt), and `transformers_version` is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import transformers
from transformers import (
    Gemma4AudioConfig,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    Gemma4VisionConfig,
)
from transformers.core_model_loading import revert_weight_conversion
from transformers.modeling_utils import remove_tied_weights_from_state_dict

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "real_layouts"
PINNED_TRANSFORMERS = "5.24.0"

S, F = "sliding_attention", "full_attention"
TEXT_PREFIX = "model.language_model."

# --------------------------------------------------------------------------------------
# The converter's variant table (upstream convert_gemma4_weights.py `_VARIANTS`), verbatim.
# Built by functions because config objects are mutable and main() mutates them.
# --------------------------------------------------------------------------------------


def _on_device_vision_config() -> Gemma4VisionConfig:
    return Gemma4VisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=16,
        num_attention_heads=12,
        num_key_value_heads=12,
        head_dim=64,
        global_head_dim=64,
        default_output_length=280,
        pooling_kernel_size=3,
        use_clipped_linears=True,
    )


def _large_model_vision_config() -> Gemma4VisionConfig:
    return Gemma4VisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=72,
        global_head_dim=72,
        default_output_length=280,
        pooling_kernel_size=3,
        use_clipped_linears=False,
        standardize=True,
    )


def _rope_params() -> dict:
    return {
        "full_attention": {"rope_theta": 1_000_000.0, "rope_type": "proportional", "partial_rotary_factor": 0.25},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    }


_DEFAULT_LAYER_TYPES = [S] * 5 + [F]
_GEMMA_4_E2B_LAYER_TYPES = [S] * 4 + [F]


def variant_config(name: str) -> Gemma4Config:
    if name == "e2b":
        return Gemma4Config(
            text_config=Gemma4TextConfig(
                hidden_size=1536,
                hidden_size_per_layer_input=256,
                intermediate_size=4 * 1536,
                num_hidden_layers=35,
                layer_types=_GEMMA_4_E2B_LAYER_TYPES * 7,
                num_attention_heads=8,
                num_key_value_heads=1,
                num_global_key_value_heads=None,
                attention_k_eq_v=False,
                use_bidirectional_attention=None,
                num_kv_shared_layers=20,
                use_double_wide_mlp=True,
                final_logit_softcapping=30.0,
                rope_parameters=_rope_params(),
            ),
            vision_config=_on_device_vision_config(),
            audio_config=Gemma4AudioConfig(),
            vision_soft_tokens_per_image=280,
        )
    if name == "e4b":
        return Gemma4Config(
            text_config=Gemma4TextConfig(
                hidden_size=2560,
                hidden_size_per_layer_input=256,
                intermediate_size=4 * 2560,
                num_hidden_layers=42,
                layer_types=_DEFAULT_LAYER_TYPES * 7,
                num_attention_heads=8,
                num_key_value_heads=2,
                num_global_key_value_heads=None,
                global_head_dim=512,
                attention_k_eq_v=False,
                use_bidirectional_attention=None,
                num_kv_shared_layers=18,
                final_logit_softcapping=30.0,
                rope_parameters=_rope_params(),
            ),
            vision_config=_on_device_vision_config(),
            vision_soft_tokens_per_image=280,
            audio_config=Gemma4AudioConfig(),
        )
    if name == "31b":
        return Gemma4Config(
            text_config=Gemma4TextConfig(
                hidden_size=5376,
                hidden_size_per_layer_input=0,
                intermediate_size=4 * 5376,
                num_hidden_layers=60,
                layer_types=_DEFAULT_LAYER_TYPES * 10,
                num_attention_heads=32,
                num_key_value_heads=16,
                num_global_key_value_heads=4,
                attention_k_eq_v=True,
                use_bidirectional_attention="vision",
                num_kv_shared_layers=0,
                sliding_window=1024,
                final_logit_softcapping=30.0,
                rope_parameters=_rope_params(),
                max_position_embeddings=262_144,
            ),
            vision_config=_large_model_vision_config(),
            vision_soft_tokens_per_image=280,
        )
    if name == "26b_a4b":
        return Gemma4Config(
            text_config=Gemma4TextConfig(
                hidden_size=2816,
                hidden_size_per_layer_input=0,
                intermediate_size=2112,  # the dense MLP beside the MoE block
                num_hidden_layers=30,
                layer_types=_DEFAULT_LAYER_TYPES * 5,
                num_attention_heads=16,
                num_key_value_heads=8,
                num_global_key_value_heads=2,
                attention_k_eq_v=True,
                use_bidirectional_attention="vision",
                num_kv_shared_layers=0,
                enable_moe_block=True,
                num_experts=128,
                moe_intermediate_size=704,
                top_k_experts=8,
                sliding_window=1024,
                final_logit_softcapping=30.0,
                rope_parameters=_rope_params(),
                max_position_embeddings=262_144,
            ),
            vision_config=_large_model_vision_config(),
            vision_soft_tokens_per_image=280,
        )
    raise KeyError(name)


VARIANTS = ["e2b", "e4b", "26b_a4b", "31b"]

# Token ids the converter reads from the tokenizer and writes into config.json (spec §6.1).
TOKENIZER_IDS = {
    "image_token_id": 258880,  # <|image|>
    "boi_token_id": 255999,  # <|image>
    "eoi_token_id": 258882,  # <image|>
    "audio_token_id": 258881,  # <|audio|>
    "boa_token_id": 256000,  # <|audio>
    "eoa_token_id": 258883,  # <audio|>  (the converter's spelling; the field is eoa_token_index)
}

# --------------------------------------------------------------------------------------
# Build one variant on the meta device and collect what save_pretrained would write
# --------------------------------------------------------------------------------------


def build_layout(name: str) -> tuple[dict, Gemma4ForConditionalGeneration]:
    config = variant_config(name)
    # converter main(): every tower in bfloat16 (its --text/vision/audio_dtype defaults)
    config.text_config.dtype = torch.bfloat16
    config.vision_config.dtype = torch.bfloat16
    if config.audio_config is not None:
        config.audio_config.dtype = torch.bfloat16

    with torch.device("meta"):
        model = Gemma4ForConditionalGeneration(config)
    for t in list(model.parameters()) + list(model.buffers()):
        assert t.device.type == "meta", "a tensor was materialised"

    # save_pretrained(): top-level dtype/architectures on the (shared) config object.
    # The converter loads bf16 tensors with assign=True, so the model dtype is bfloat16.
    model.config.dtype = "bfloat16"
    model.config.architectures = [model.__class__.__name__]
    # converter main(): token ids from the tokenizer, then config.save_pretrained again
    for k, v in TOKENIZER_IDS.items():
        setattr(config, k, v)
    assert model.config is config
    with tempfile.TemporaryDirectory(prefix="gemma4-real-layout-") as tmp:
        config.save_pretrained(tmp)
        config_json = json.loads((Path(tmp) / "config.json").read_text())

    # save_pretrained(): state_dict -> ignore-on-save -> drop tied -> revert weight conversion
    state_dict = model.state_dict()
    for k in model._keys_to_ignore_on_save or []:
        state_dict.pop(k, None)
    state_dict = remove_tied_weights_from_state_dict(state_dict, model)
    state_dict = revert_weight_conversion(model, state_dict)

    tensors = {k: [int(d) for d in v.shape] for k, v in state_dict.items()}
    text_params = sum(
        v.numel() for k, v in state_dict.items() if k.startswith(TEXT_PREFIX) or k == "lm_head.weight"
    )
    return {"config": config_json, "tensors": tensors, "text_params": int(text_params)}, model


def dumps(layout: dict) -> str:
    return json.dumps(layout, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"


# --------------------------------------------------------------------------------------
# Spec checks (gemma4-architecture.md §3, §7.3, §1) — numbers typed in from the spec,
# deliberately not derived from the config, so this is an independent cross-check.
# --------------------------------------------------------------------------------------

SPEC = {
    # H, L, V_ple cols, F layers, first_shared, donors (S, F), q S/F, k S/F, v S/F, o in S/F,
    # MLP width per layer, PLE gate D, MoE shapes
    "e2b": dict(H=1536, L=35, ple=8960, full=list(range(4, 35, 5)), first_shared=15, donors=(13, 14),
                q=(2048, 4096), k=(256, 512), v=(256, 512), o_in=(2048, 4096),
                mlp=lambda i: 6144 if i < 15 else 12288, D=256, caches=(12, 3)),
    "e4b": dict(H=2560, L=42, ple=10752, full=list(range(5, 42, 6)), first_shared=24, donors=(22, 23),
                q=(2048, 4096), k=(512, 1024), v=(512, 1024), o_in=(2048, 4096),
                mlp=lambda i: 10240, D=256, caches=(20, 4)),
    "26b_a4b": dict(H=2816, L=30, ple=None, full=list(range(5, 30, 6)), first_shared=30, donors=None,
                    q=(4096, 8192), k=(2048, 1024), v=(2048, None), o_in=(4096, 8192),
                    mlp=lambda i: 2112, D=None, caches=(25, 5),
                    moe=dict(router=[128, 2816], gate_up=[128, 1408, 2816], down=[128, 2816, 704])),
    "31b": dict(H=5376, L=60, ple=None, full=list(range(5, 60, 6)), first_shared=60, donors=None,
                q=(8192, 16384), k=(4096, 2048), v=(4096, None), o_in=(8192, 16384),
                mlp=lambda i: 21504, D=None, caches=(50, 10)),
}

# §1 "parameter-count sanity check" (billions): (total text, PLE table or None, active or None)
SPEC_PARAMS = {
    "e2b": dict(without_ple=2.2, ple=2.35),
    "e4b": dict(without_ple=4.5, ple=2.82),
    "26b_a4b": dict(total=25.2, active=3.8),
    "31b": dict(total=30.7),
}


def spec_check(name: str, layout: dict, tcfg: Gemma4TextConfig) -> tuple[list[str], list[str], dict]:
    """Returns (hard mismatches, soft notes, derived structure)."""
    sp = SPEC[name]
    t = layout["tensors"]
    P = TEXT_PREFIX
    bad: list[str] = []
    H, L = sp["H"], sp["L"]

    def expect(key: str, shape):
        got = t.get(key)
        if shape is None:
            if got is not None:
                bad.append(f"{key}: expected absent, got {got}")
        elif got != list(shape):
            bad.append(f"{key}: expected {list(shape)}, got {got}")

    types = tcfg.layer_types
    full = [i for i, x in enumerate(types) if x == F]
    if tcfg.num_hidden_layers != L or len(types) != L:
        bad.append(f"L: expected {L}, got {tcfg.num_hidden_layers}")
    if full != sp["full"]:
        bad.append(f"full-attention layers: expected {sp['full']}, got {full}")

    # §3 derived structure, HF's own view (kv_sharing_modes) vs the spec's donor rule
    modes = tcfg.kv_sharing_modes
    first_shared = L - tcfg.num_kv_shared_layers
    if first_shared != sp["first_shared"]:
        bad.append(f"first_shared: expected {sp['first_shared']}, got {first_shared}")
    shared = [i for i, m in enumerate(modes) if m == "reuse"]
    if shared != list(range(sp["first_shared"], L)):
        bad.append(f"KV-shared layers: HF {shared}")
    donors = {}
    for i in shared:
        donors[i] = max(j for j in range(first_shared) if types[j] == types[i])
    store = sorted(i for i, m in enumerate(modes) if m == "store")
    if sp["donors"] is not None:
        exp_s, exp_f = sp["donors"]
        spec_donors = {i: (exp_f if types[i] == F else exp_s) for i in shared}
        if donors != spec_donors:
            bad.append("donor map differs from spec §3")
        if store != sorted({exp_s, exp_f}):
            bad.append(f"HF 'store' layers {store} != spec donors {sorted({exp_s, exp_f})}")
    else:
        # No sharing: HF still flags the last layer of each type as "store" (its K/V is kept
        # for assistant/draft models, configuration_gemma4.py kv_sharing_modes); no effect on
        # the weights or on this model's own forward.
        last = sorted(max(i for i in range(L) if types[i] == ty) for ty in set(types))
        if store != last:
            bad.append(f"HF 'store' layers {store} != last layer of each type {last}")
    ns = [i for i in range(first_shared)]
    caches = (sum(types[i] == S for i in ns), sum(types[i] == F for i in ns))
    if caches != sp["caches"]:
        bad.append(f"non-shared KV caches (S, F): expected {sp['caches']}, got {caches}")

    # §7.3 shapes
    expect(P + "embed_tokens.weight", [262144, H])
    expect(P + "norm.weight", [H])
    expect("lm_head.weight", None)
    if sp["ple"]:
        expect(P + "embed_tokens_per_layer.weight", [262144, sp["ple"]])
        expect(P + "per_layer_model_projection.weight", [sp["ple"], H])
        expect(P + "per_layer_projection_norm.weight", [sp["D"]])
    else:
        for k in ("embed_tokens_per_layer.weight", "per_layer_model_projection.weight",
                  "per_layer_projection_norm.weight"):
            expect(P + k, None)
    for i in range(L):
        f = 1 if types[i] == F else 0
        hd = 512 if f else 256
        lp = f"{P}layers.{i}."
        is_shared = i >= sp["first_shared"]
        expect(lp + "self_attn.q_proj.weight", [sp["q"][f], H])
        expect(lp + "self_attn.q_norm.weight", [hd])
        expect(lp + "self_attn.o_proj.weight", [H, sp["o_in"][f]])
        expect(lp + "self_attn.k_proj.weight", None if is_shared else [sp["k"][f], H])
        expect(lp + "self_attn.k_norm.weight", None if is_shared else [hd])
        v = sp["v"][f]
        expect(lp + "self_attn.v_proj.weight", None if (is_shared or v is None) else [v, H])
        expect(lp + "self_attn.v_norm.weight", None)
        I = sp["mlp"](i)
        expect(lp + "mlp.gate_proj.weight", [I, H])
        expect(lp + "mlp.up_proj.weight", [I, H])
        expect(lp + "mlp.down_proj.weight", [H, I])
        expect(lp + "layer_scalar", [1])
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            expect(lp + n + ".weight", [H])
        if sp["D"]:
            expect(lp + "per_layer_input_gate.weight", [sp["D"], H])
            expect(lp + "per_layer_projection.weight", [H, sp["D"]])
            expect(lp + "post_per_layer_input_norm.weight", [H])
        else:
            expect(lp + "per_layer_input_gate.weight", None)
        moe = sp.get("moe")
        if moe:
            expect(lp + "router.proj.weight", moe["router"])
            expect(lp + "router.scale", [H])
            expect(lp + "router.per_expert_scale", [moe["router"][0]])
            expect(lp + "experts.gate_up_proj", moe["gate_up"])
            expect(lp + "experts.down_proj", moe["down"])
            for n in ("pre_feedforward_layernorm_2", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2"):
                expect(lp + n + ".weight", [H])
        else:
            expect(lp + "router.proj.weight", None)
            expect(lp + "experts.gate_up_proj", None)
    # nothing else under the text prefix
    per_layer_known = {
        "self_attn.q_proj.weight", "self_attn.q_norm.weight", "self_attn.o_proj.weight",
        "self_attn.k_proj.weight", "self_attn.k_norm.weight", "self_attn.v_proj.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "layer_scalar",
        "input_layernorm.weight", "post_attention_layernorm.weight", "pre_feedforward_layernorm.weight",
        "post_feedforward_layernorm.weight", "per_layer_input_gate.weight", "per_layer_projection.weight",
        "post_per_layer_input_norm.weight", "router.proj.weight", "router.scale", "router.per_expert_scale",
        "experts.gate_up_proj", "experts.down_proj", "pre_feedforward_layernorm_2.weight",
        "post_feedforward_layernorm_1.weight", "post_feedforward_layernorm_2.weight",
    }
    top_known = {"embed_tokens.weight", "norm.weight", "embed_tokens_per_layer.weight",
                 "per_layer_model_projection.weight", "per_layer_projection_norm.weight"}
    for k in t:
        if not k.startswith(P):
            continue
        rest = k[len(P):]
        if rest.startswith("layers."):
            if rest.split(".", 2)[2] not in per_layer_known:
                bad.append(f"unexpected text tensor {k}")
        elif rest not in top_known:
            bad.append(f"unexpected text tensor {k}")
    others = sorted({k for k in t if not k.startswith(P)})
    for k in others:
        if not k.startswith(("model.vision_tower.", "model.embed_vision.", "model.audio_tower.",
                             "model.embed_audio.")):
            bad.append(f"unexpected non-text tensor {k}")

    # §1 parameter counts (approximate; reported, not fatal)
    notes = []
    tp = layout["text_params"]
    ple = 262144 * sp["ple"] if sp["ple"] else 0
    exp = SPEC_PARAMS[name]
    counts = {"text_params": tp, "embed_tokens": 262144 * H,
              "checkpoint_total": sum(_numel(v) for v in t.values())}
    for tower in ("vision_tower", "embed_vision", "audio_tower", "embed_audio"):
        n = sum(_numel(v) for k, v in t.items() if k.startswith(f"model.{tower}."))
        if n:
            counts[tower] = n

    def cmp(label, got, claimed):
        decimals = len(str(claimed).split(".")[1])
        ok = round(got / 1e9, decimals) == claimed
        notes.append(f"{'ok  ' if ok else 'DIFF'} §1 {label}: {got / 1e9:.4f}B vs spec ≈{claimed}B")

    if "without_ple" in exp:
        counts["ple_table"] = ple
        counts["without_ple"] = tp - ple
        cmp("text without PLE table", tp - ple, exp["without_ple"])
        cmp("PLE table", ple, exp["ple"])
    if "total" in exp:
        cmp("text total", tp, exp["total"])
    if "active" in exp:
        moe = sp["moe"]
        per_layer_experts = (moe["gate_up"][0] * moe["gate_up"][1] * moe["gate_up"][2]
                             + moe["down"][0] * moe["down"][1] * moe["down"][2])
        active = tp - L * per_layer_experts * (1 - tcfg.top_k_experts / tcfg.num_experts)
        counts["active"] = int(active)
        cmp(f"active (top-{tcfg.top_k_experts} of {tcfg.num_experts})", active, exp["active"])

    derived = dict(types=types, shared=shared, donors=donors, store=store, caches=caches,
                   counts=counts, n_tensors=len(t),
                   n_text=sum(k.startswith(P) for k in t), towers=others)
    return bad, notes, derived


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def describe(name: str, layout: dict, d: dict, size: int) -> str:
    types = d["types"]
    sig = "".join("F" if x == F else "S" for x in types)
    t = layout["tensors"]
    mlp = {}
    for i in range(len(types)):
        w = t[f"{TEXT_PREFIX}layers.{i}.mlp.gate_proj.weight"][0]
        mlp.setdefault(w, []).append(i)
    mlp_s = ", ".join(f"{w}: {_ranges(ix)}" for w, ix in mlp.items())
    towers = {}
    for k in d["towers"]:
        towers[k.split(".")[1]] = towers.get(k.split(".")[1], 0) + 1
    lines = [
        f"== {name}: {size} bytes, {d['n_tensors']} tensors ({d['n_text']} text; towers {towers})",
        f"   text_params {layout['text_params']:,}  {d['counts']}",
        f"   layer_types {sig}  (F at {[i for i, x in enumerate(types) if x == F]})",
        f"   KV-shared layers {_ranges(d['shared']) or 'none'}; HF 'store' layers {d['store']}; "
        f"non-shared caches (S, F) = {d['caches']}",
        f"   MLP width: {mlp_s}",
    ]
    if d["donors"]:
        by = {}
        for i, j in d["donors"].items():
            by.setdefault(j, []).append(i)
        lines.append("   donors: " + "; ".join(f"layer {j} ({'F' if types[j] == F else 'S'}) -> {_ranges(v)}"
                                               for j, v in sorted(by.items())))
    return "\n".join(lines)


def _ranges(ix: list[int]) -> str:
    out, start, prev = [], None, None
    for i in ix:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", type=str, default="")
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with --out")
    args = ap.parse_args(argv)

    transformers.logging.set_verbosity_error()
    if transformers.__version__ != PINNED_TRANSFORMERS:
        print(f"warning: transformers {transformers.__version__} != pinned {PINNED_TRANSFORMERS}; "
              "config.json contents (and --check) depend on the version", file=sys.stderr)
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)

    failures, diffs, total = 0, [], 0
    for n in names:
        layout, model = build_layout(n)
        text = dumps(layout)
        total += len(text.encode())
        bad, notes, d = spec_check(n, layout, model.config.text_config)
        print(describe(n, layout, d, len(text.encode())))
        for line in notes:
            print("   " + line)
        for line in bad:
            print("   MISMATCH " + line)
        failures += len(bad)
        path = args.out / f"{n}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                diffs.append(str(path))
        else:
            path.write_text(text)
        del model

    print(f"total {total} bytes ({total / 1024 / 1024:.2f} MiB)")
    if args.check:
        if diffs:
            print("CHECK FAILED: differs from committed: " + ", ".join(diffs))
            return 1
        print("CHECK OK: regenerated layouts match the committed ones")
    if failures:
        print(f"{failures} spec mismatches (§3/§7.3)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
