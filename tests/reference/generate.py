#!/usr/bin/env python3
"""Golden-fixture generator for the Gemma 4 text decoder.

Builds tiny random-weight Gemma 4 models with Hugging Face transformers (pinned in
requirements.txt), saves them exactly as `save_pretrained` writes them, reloads them in
float32 with eager attention and records reference activations in
`tests/fixtures/<name>/golden.safetensors`.

Usage:
    python tests/reference/generate.py                # (re)write tests/fixtures/
    python tests/reference/generate.py --out DIR      # write somewhere else
    python tests/reference/generate.py --check        # regenerate into a temp dir and
                                                      # compare with tests/fixtures/
    python tests/reference/generate.py --only dense   # a subset (comma separated)

Everything is deterministic (fixed seeds, CPU, float32). See tests/reference/README.md.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import (
    Gemma4AudioConfig,
    Gemma4Config,
    Gemma4ForCausalLM,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    Gemma4VisionConfig,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures"

torch.set_num_threads(1)  # bit-stable CPU reductions
torch.use_deterministic_algorithms(True)

from fixture_specs import COMMON_TEXT, FIXTURES, F, S  # noqa: E402,F401  (the fixture definitions)


# --------------------------------------------------------------------------------------
# Weight initialisation
# --------------------------------------------------------------------------------------


def two_band(gen: torch.Generator, shape, lo_band=(0.3, 0.7), hi_band=(1.3, 1.9)) -> torch.Tensor:
    """Uniform in lo_band ∪ hi_band (each band picked with prob 1/2)."""
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    pick = torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5
    lo = lo_band[0] + u * (lo_band[1] - lo_band[0])
    hi = hi_band[0] + u * (hi_band[1] - hi_band[0])
    return torch.where(pick, hi, lo).float()


def init_text_weights(model: torch.nn.Module, text_prefix: str, cfg: Gemma4TextConfig, seed: int) -> None:
    """Overwrite every text-decoder tensor with non-trivial random values.

    * Linear weights [out, in]: N(0, 1/in) (so activations stay O(1)).
    * Token embedding: N(0, 1) (h0 = e*sqrt(H) is then large; logits reach the softcap).
    * Every RMSNorm weight (incl. q_norm/k_norm/PLE norms): U([0.3,0.7] ∪ [1.3,1.9]).
    * layer_scalar: U([0.5,0.8] ∪ [1.2,1.6]).
    * Router: proj N(0, 2.5²/in) so routing is decisive; scale U(0.5,1.5);
      per_expert_scale U(0.5,2.0).
    * Attention biases: N(0, 0.3²).
    """
    gen = torch.Generator().manual_seed(seed)
    H = cfg.hidden_size
    named = dict(model.named_parameters())
    named.update({n: b for n, b in model.named_buffers() if n.endswith("layer_scalar")})
    with torch.no_grad():
        for name in sorted(named):
            if not name.startswith(text_prefix) and not (name == "lm_head.weight"):
                continue
            t = named[name]
            parts = name.split(".")
            leaf, owner = parts[-1], parts[-2]
            if name == "lm_head.weight":
                if cfg.tie_word_embeddings:
                    continue  # tied to embed_tokens
                new = torch.randn(t.shape, generator=gen) / math.sqrt(H)
            elif leaf == "layer_scalar":
                new = two_band(gen, t.shape, (0.5, 0.8), (1.2, 1.6))
            elif "norm" in owner and leaf == "weight":
                new = two_band(gen, t.shape)
            elif owner == "embed_tokens":
                new = torch.randn(t.shape, generator=gen)
            elif owner == "embed_tokens_per_layer":
                new = torch.randn(t.shape, generator=gen)
            elif owner == "router" and leaf == "scale":
                new = 0.5 + torch.rand(t.shape, generator=gen)
            elif owner == "router" and leaf == "per_expert_scale":
                new = 0.5 + 1.5 * torch.rand(t.shape, generator=gen)
            elif owner == "proj" and parts[-3] == "router":
                # router input is RMS(h)*scale*H**-0.5 (entries ~1/sqrt(H)); std 4 gives router
                # logits with std ~4 so the top-k choice is decisive
                new = 4.0 * torch.randn(t.shape, generator=gen)
            elif owner == "experts" and leaf in ("gate_up_proj", "down_proj"):
                new = torch.randn(t.shape, generator=gen) / math.sqrt(t.shape[2])
            elif leaf == "bias":
                new = 0.3 * torch.randn(t.shape, generator=gen)
            elif leaf == "weight" and t.dim() == 2:
                new = torch.randn(t.shape, generator=gen) / math.sqrt(t.shape[1])
            else:
                raise RuntimeError(f"no init rule for {name} {tuple(t.shape)}")
            t.copy_(new.to(t.dtype))


# --------------------------------------------------------------------------------------
# Model construction / saving
# --------------------------------------------------------------------------------------


def build_config(spec: dict):
    text_cfg = Gemma4TextConfig(**copy.deepcopy(spec["text"]))
    if spec["kind"] == "causal":
        return text_cfg, text_cfg
    vision_cfg = Gemma4VisionConfig(**spec["vision"])
    audio_cfg = Gemma4AudioConfig(**spec["audio"])
    cfg = Gemma4Config(text_config=text_cfg, vision_config=vision_cfg, audio_config=audio_cfg,
                       tie_word_embeddings=spec["text"].get("tie_word_embeddings", True))
    return cfg, cfg.text_config


def model_class(spec):
    return Gemma4ForCausalLM if spec["kind"] == "causal" else Gemma4ForConditionalGeneration


def text_prefix(spec) -> str:
    return "model." if spec["kind"] == "causal" else "model.language_model."


def shared_layer_extra_tensors(tcfg: Gemma4TextConfig, prefix: str, gen: torch.Generator, dtype) -> dict:
    """k_proj/v_proj/k_norm tensors for KV-shared layers, as early exports carried them."""
    extra = {}
    modes = tcfg.kv_sharing_modes
    for i, mode in enumerate(modes):
        if mode != "reuse":
            continue
        lc = tcfg.per_layer_config[i]
        hd, nkv = lc.head_dim, lc.num_key_value_heads
        is_full = tcfg.layer_types[i] == F
        p = f"{prefix}layers.{i}.self_attn."
        extra[p + "k_proj.weight"] = (torch.randn(nkv * hd, tcfg.hidden_size, generator=gen) / 8).to(dtype)
        if not (tcfg.attention_k_eq_v and is_full):
            extra[p + "v_proj.weight"] = (torch.randn(nkv * hd, tcfg.hidden_size, generator=gen) / 8).to(dtype)
        extra[p + "k_norm.weight"] = two_band(gen, (hd,)).to(dtype)
    return extra


def inject_into_checkpoint(d: Path, extra: dict) -> None:
    f = d / "model.safetensors"
    assert f.exists(), "injection only implemented for single-file checkpoints"
    with safe_open(str(f), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(f))
    clash = set(extra) & set(tensors)
    assert not clash, f"HF already saved {sorted(clash)}"
    tensors.update(extra)
    save_file(tensors, str(f), metadata=meta)


def write_junk(d: Path, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    junk = {
        "tok_embeddings.weight": torch.randn(8, 4, generator=gen),
        "layers.0.attention.wq.weight": torch.randn(4, 4, generator=gen),
        "norm.weight": torch.ones(4),
    }
    save_file(junk, str(d / "consolidated.safetensors"), metadata={"format": "pt"})


def minimal_config(config_json: dict) -> dict:
    """config.json minus every key whose value equals the Gemma4TextConfig default."""
    defaults = Gemma4TextConfig().to_dict()
    # HF's default layer_types depends on num_hidden_layers: (i+1) % 6 == 0 -> full, else sliding
    defaults["layer_types"] = [F if (i + 1) % 6 == 0 else S for i in range(config_json["num_hidden_layers"])]
    keep = {"model_type", "architectures", "per_layer_config"}
    return {k: v for k, v in sorted(config_json.items())
            if k in keep or k not in defaults or defaults[k] != v}


def verify_alt_config(path: Path, rmodel, rtcfg, ids) -> float:
    """An alternative config file must give the same per-layer structure and identical logits."""
    alt_cfg = Gemma4TextConfig.from_json_file(str(path))
    assert alt_cfg.layer_types == rtcfg.layer_types
    assert alt_cfg.rope_parameters == rtcfg.rope_parameters
    for i in range(rtcfg.num_hidden_layers):
        a, b = alt_cfg.per_layer_config[i], rtcfg.per_layer_config[i]
        assert (a.head_dim, a.num_key_value_heads) == (b.head_dim, b.num_key_value_heads), i
    alt_cfg._attn_implementation = "eager"
    amodel = Gemma4ForCausalLM(alt_cfg).eval()
    amodel.load_state_dict(rmodel.state_dict())
    with torch.no_grad():
        al = amodel(input_ids=ids, use_cache=False).logits
        ref = rmodel(input_ids=ids, use_cache=False).logits
    diff = (al - ref).abs().max().item()
    assert diff == 0.0, (path, diff)
    return diff


def alt_spelling_config(config_json: dict, tcfg: Gemma4TextConfig, given_layer_types: list[str]) -> dict:
    """The pre-per_layer_config spelling: global_head_dim / num_global_key_value_heads.

    Hand-built (transformers 5.24 never writes it). It also carries the layer_types list as
    *given* to the config constructor, i.e. before HF's "last layer must be full_attention"
    correction, so that a loader must apply that rule itself.
    """
    alt = copy.deepcopy(config_json)
    alt["layer_types"] = list(given_layer_types)
    plc = alt.pop("per_layer_config")
    full = [i for i, t in enumerate(tcfg.layer_types) if t == F]
    head_dims = {tcfg.per_layer_config[i].head_dim for i in full}
    kv = {tcfg.per_layer_config[i].num_key_value_heads for i in full}
    assert len(head_dims) == 1 and len(kv) == 1
    assert sorted(int(k) for k in plc) == full, (plc, full)
    alt["global_head_dim"] = head_dims.pop()
    if tcfg.attention_k_eq_v:
        alt["num_global_key_value_heads"] = kv.pop()
    else:
        alt["num_global_key_value_heads"] = None
    return dict(sorted(alt.items()))


# --------------------------------------------------------------------------------------
# Golden computation
# --------------------------------------------------------------------------------------


def make_inputs(vocab: int, T: int, seed: int, attempt: int = 0):
    gen = torch.Generator().manual_seed(seed + 17 + 1000 * attempt)
    ids = torch.randint(3, vocab, (2, T), generator=gen, dtype=torch.int64)
    ids[:, 0] = 2  # <bos>
    # a repeated span inside row 0 so that long-range (beyond-window) structure exists
    ids[0, T // 2 : T // 2 + 4] = ids[0, 1:5]
    valid = T - 4  # row 1: positions valid..T-1 are padding
    pad_ids = ids.clone()
    pad_ids[1, valid:] = 0
    mask = torch.ones(2, T, dtype=torch.int64)
    mask[1, valid:] = 0
    return ids, pad_ids, mask, valid


def run_with_hooks(model, spec, tcfg, ids, attention_mask=None):
    """Forward in fp32 eager. Returns (output, captured dict)."""
    if spec["kind"] == "causal":
        tm = model.model
    else:
        tm = model.model.language_model
    cap: dict[str, torch.Tensor] = {}
    handles = []
    handles.append(tm.embed_tokens.register_forward_hook(
        lambda m, a, o: cap.__setitem__("embeddings", o.detach().clone())))
    for i, layer in enumerate(tm.layers):
        handles.append(layer.register_forward_hook(
            lambda m, a, o, i=i: cap.__setitem__(f"layer_out.{i}", o.detach().clone())))
        if tcfg.hidden_size_per_layer_input:
            handles.append(layer.register_forward_pre_hook(
                lambda m, a, i=i: cap.__setitem__(f"_pli.{i}", a[1].detach().clone())))
    handles.append(tm.norm.register_forward_hook(
        lambda m, a, o: cap.__setitem__("final_norm", o.detach().clone())))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=attention_mask, labels=ids if attention_mask is None else None,
                        use_cache=False, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    if tcfg.hidden_size_per_layer_input:
        L = tcfg.num_hidden_layers
        cap["per_layer_inputs"] = torch.stack([cap.pop(f"_pli.{i}") for i in range(L)], dim=2)
    return out, cap


def compute_goldens(model, spec, tcfg, T, seed, attempt=0):
    ids, pad_ids, mask, valid = make_inputs(tcfg.vocab_size, T, seed, attempt)
    out, cap = run_with_hooks(model, spec, tcfg, ids)
    L = tcfg.num_hidden_layers
    golden = {"input_ids": ids, "logits": out.logits.float().contiguous(),
              "loss": out.loss.float().reshape(1)}
    golden["embeddings"] = cap["embeddings"]
    for i in range(L):
        golden[f"layer_out.{i}"] = cap[f"layer_out.{i}"]
    golden["final_norm"] = cap["final_norm"]
    if "per_layer_inputs" in cap:
        golden["per_layer_inputs"] = cap["per_layer_inputs"]

    # --- self-consistency checks against HF's own outputs ---------------------------
    hs = out.hidden_states
    assert len(hs) == L + 1
    assert torch.equal(hs[0], golden["embeddings"]), "hidden_states[0] != scaled embedding"
    for i in range(1, L):
        assert torch.equal(hs[i], golden[f"layer_out.{i-1}"]), f"hidden_states[{i}] != layer_out.{i-1}"
    assert torch.equal(hs[L], golden["final_norm"]), "hidden_states[-1] is not the final-norm output"
    # loss = mean CE over all B*(T-1) next-token positions
    lp = torch.log_softmax(golden["logits"][:, :-1].double(), -1)
    ce = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1).mean()
    assert abs(ce.item() - golden["loss"].item()) < 1e-4, (ce.item(), golden["loss"].item())
    # embedding scale
    if spec["kind"] == "causal":
        E = model.model.embed_tokens.weight
    else:
        E = model.model.language_model.embed_tokens.weight
    h0 = E[ids] * torch.tensor(tcfg.hidden_size ** 0.5).to(E.dtype)
    assert torch.equal(h0, golden["embeddings"])

    # --- right-padding case ---------------------------------------------------------
    pout, _ = run_with_hooks(model, spec, tcfg, pad_ids, attention_mask=mask)
    golden["pad_input_ids"] = pad_ids
    golden["pad_attention_mask"] = mask
    golden["pad_logits"] = pout.logits.float().contiguous()
    checks = {
        "pad_row0_maxdiff": (golden["pad_logits"][0] - golden["logits"][0]).abs().max().item(),
        "pad_row1_valid_maxdiff": (golden["pad_logits"][1, :valid] - golden["logits"][1, :valid]).abs().max().item(),
        "pad_valid_len_row1": valid,
    }
    return golden, checks


def router_margin(model, spec, tcfg, ids):
    """Smallest gap between the k-th and (k+1)-th router score (logit) over all tokens/layers."""
    if not tcfg.enable_moe_block:
        return None
    tm = model.model if spec["kind"] == "causal" else model.model.language_model
    gaps = []
    hs = []
    k = tcfg.top_k_experts

    def hook(m, a, o):
        # router_probabilities = softmax(scores); log-prob differences == score differences
        lp = torch.sort(torch.log(o[0].double()), dim=-1, descending=True).values
        gaps.append((lp[..., k - 1] - lp[..., k]).min().item())

    for layer in tm.layers:
        hs.append(layer.router.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hs:
        h.remove()
    return min(gaps)


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def generate_fixture(name: str, spec: dict, out_root: Path) -> dict:
    d = out_root / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    seed = spec["seed"]

    torch.manual_seed(seed)
    cfg, tcfg = build_config(spec)
    cls = model_class(spec)
    model = cls(cfg).eval()
    init_text_weights(model, text_prefix(spec), tcfg, seed)
    if spec["disk_dtype"] != torch.float32:
        model = model.to(spec["disk_dtype"])
    save_kwargs = {}
    if "max_shard_size" in spec:
        save_kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(str(d), **save_kwargs)
    hf_saved_keys = set()
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            hf_saved_keys.update(fh.keys())
    # generation_config.json is not part of the fixture contract
    gc = d / "generation_config.json"
    if gc.exists():
        gc.unlink()

    injected = []
    if spec.get("inject_shared_kv"):
        gen = torch.Generator().manual_seed(seed + 99)
        extra = shared_layer_extra_tensors(tcfg, text_prefix(spec), gen, spec["disk_dtype"])
        inject_into_checkpoint(d, extra)
        injected = sorted(extra)
    if spec.get("junk_file"):
        write_junk(d, seed + 7)

    config_json = json.loads((d / "config.json").read_text())
    if spec.get("alt_spelling"):
        alt = alt_spelling_config(config_json, tcfg, spec["text"]["layer_types"])
        (d / "config_alt_spelling.json").write_text(json.dumps(alt, indent=2, sort_keys=True) + "\n")
    if spec.get("minimal_config"):
        (d / "config_minimal.json").write_text(json.dumps(minimal_config(config_json), indent=2, sort_keys=True) + "\n")

    # ---- reload from disk in float32, eager, and compute the goldens ---------------------
    # (junk file is moved away during the reload: HF only reads model.safetensors[.index.json])
    rmodel, info = cls.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager",
                                       output_loading_info=True)
    rmodel.eval()
    rtcfg = rmodel.config if spec["kind"] == "causal" else rmodel.config.text_config
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    unexpected = sorted(info["unexpected_keys"])
    # layer_scalar must have been loaded (not re-initialised to 1)
    tm = rmodel.model if spec["kind"] == "causal" else rmodel.model.language_model
    assert all(abs(l.layer_scalar.item() - 1.0) > 0.1 for l in tm.layers)
    assert tm.layers[0].input_layernorm.weight.dtype == torch.float32

    # MoE: pick the first input draw whose top-k routing is decisive everywhere (the k-th and
    # (k+1)-th router logits differ by > 0.05 for every token and layer, so the choice does not
    # hinge on float noise in a reimplementation). Padded positions of the padding case excluded.
    attempt = 0
    if rtcfg.enable_moe_block:
        while True:
            ids, _, _, _ = make_inputs(rtcfg.vocab_size, spec["T"], seed, attempt)
            if router_margin(rmodel, spec, rtcfg, ids) > 0.05:
                break
            attempt += 1
            assert attempt < 200, "no decisive routing found"
    golden, checks = compute_goldens(rmodel, spec, rtcfg, spec["T"], seed, attempt)
    checks["input_attempt"] = attempt
    checks["router_min_topk_gap"] = router_margin(rmodel, spec, rtcfg, golden["input_ids"])

    # alternative config files must give the same per-layer structure and identical logits
    for alt_name in ("config_alt_spelling.json", "config_minimal.json"):
        if (d / alt_name).exists():
            checks[f"{alt_name}_logits_maxdiff"] = verify_alt_config(d / alt_name, rmodel, rtcfg, golden["input_ids"])

    # one metadata key only: safetensors serialises the metadata map in arbitrary order, and a
    # single key keeps the file bytes reproducible
    meta = {"info": json.dumps({
        "fixture": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "pad_valid_len_row1": checks["pad_valid_len_row1"],
        "note": "logits/activations computed in float32, eager attention, from the weights as saved on disk",
    }, sort_keys=True)}
    golden = {k: v.contiguous() for k, v in golden.items()}
    save_file(golden, str(d / "golden.safetensors"), metadata=meta)

    # ---- summary ------------------------------------------------------------------------
    n_params = sum(p.numel() for p in rmodel.parameters())
    n_text = sum(p.numel() for n, p in rmodel.named_parameters() if n.startswith(text_prefix(spec)))
    cap = rtcfg.final_logit_softcapping
    lg = golden["logits"]
    summary = {
        "name": name,
        "files": {p.name: p.stat().st_size for p in sorted(d.iterdir())},
        "params_total": n_params,
        "params_text": n_text,
        "layer_types": rtcfg.layer_types,
        "kv_sharing_modes": rtcfg.kv_sharing_modes,
        "head_dims": [rtcfg.per_layer_config[i].head_dim for i in range(rtcfg.num_hidden_layers)],
        "kv_heads": [rtcfg.per_layer_config[i].num_key_value_heads for i in range(rtcfg.num_hidden_layers)],
        "softcap": cap,
        "logits_absmax": lg.abs().max().item(),
        "frac_logits_above_0.8cap": (lg.abs() > 0.8 * cap).float().mean().item() if cap else None,
        "loss": golden["loss"].item(),
        "hf_saved_keys": len(hf_saved_keys),
        "hf_saved_shared_kv_keys": sorted(k for k in hf_saved_keys
                                          if any(f"layers.{i}.self_attn.{n}" in k
                                                 for i, m in enumerate(rtcfg.kv_sharing_modes) if m == "reuse"
                                                 for n in ("k_proj", "v_proj", "k_norm"))),
        "injected": injected,
        "hf_unexpected_on_reload": unexpected,
        "golden_tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in golden.items()},
        "checks": checks,
    }
    assert math.isfinite(summary["loss"])
    return summary


def compare_dirs(ref: Path, new: Path) -> list[str]:
    problems = []
    for d in sorted(p for p in new.iterdir() if p.is_dir()):
        for f in sorted(d.iterdir()):
            r = ref / d.name / f.name
            if not r.exists():
                problems.append(f"missing in committed fixtures: {r}")
                continue
            if f.name == "golden.safetensors":
                a, b = load_file(str(r)), load_file(str(f))
                if set(a) != set(b):
                    problems.append(f"{r}: tensor names differ")
                    continue
                for k in a:
                    if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
                        problems.append(f"{r}:{k}: dtype/shape differ")
                    elif a[k].is_floating_point():
                        if not torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-4):
                            problems.append(f"{r}:{k}: max diff {(a[k]-b[k]).abs().max().item():.3g}")
                    elif not torch.equal(a[k], b[k]):
                        problems.append(f"{r}:{k}: differs")
            elif sha256(r) != sha256(f):
                problems.append(f"{r}: bytes differ")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", type=str, default="")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    args = ap.parse_args(argv)

    transformers.logging.set_verbosity_error()
    names = [n for n in FIXTURES if not args.only or n in args.only.split(",")]
    target = Path(tempfile.mkdtemp(prefix="gemma4-fixtures-")) if args.check else args.out
    target.mkdir(parents=True, exist_ok=True)

    summaries = []
    for n in names:
        s = generate_fixture(n, FIXTURES[n], target)
        summaries.append(s)
        print(f"== {n}: params text/total {s['params_text']}/{s['params_total']}, "
              f"logits |max| {s['logits_absmax']:.4f} (softcap {s['softcap']}), loss {s['loss']:.6f}, "
              f"frac>0.8cap {s['frac_logits_above_0.8cap']}, files {sum(s['files'].values())/1024:.1f} KiB")
        print(f"   layer_types {['S' if t == S else 'F' for t in s['layer_types']]} head_dims {s['head_dims']} "
              f"kv_heads {s['kv_heads']} kv_sharing {s['kv_sharing_modes']}")
        print(f"   checks {s['checks']}")
        if s["injected"]:
            print(f"   injected {len(s['injected'])} shared-layer K/V tensors; HF reported unexpected: "
                  f"{s['hf_unexpected_on_reload']}")

    if args.check:
        problems = compare_dirs(args.out, target)
        shutil.rmtree(target)
        if problems:
            print("\n".join(problems))
            print(f"CHECK FAILED: {len(problems)} differences")
            return 1
        print("CHECK OK: regenerated fixtures match the committed ones")
        return 0

    manifest = {
        "generator": "tests/reference/generate.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "fixtures": {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in summaries},
    }
    if not args.only:
        (target / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"total fixture size: {total/1024/1024:.2f} MiB in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
