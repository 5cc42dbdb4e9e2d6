#!/usr/bin/env python3
"""LoRA golden data from Hugging Face PEFT for the Gemma 4 fixtures.

For every fixture in tests/fixtures/<name>/ (written by generate.py) this script loads the
checkpoint in float32 with eager attention, wraps it with a PEFT `LoraConfig` (versions pinned in
requirements.txt), fills lora_A / lora_B with seeded random values (B non-zero, so the adapter is
not the identity) and writes to tests/fixtures/<name>/peft/:

* adapter_config.json, adapter_model.safetensors  - byte-for-byte what `save_pretrained` writes
* golden.safetensors - input_ids, lora_logits, lora_loss, grad.<K> for every key K of the adapter
* merged.safetensors - (dense, e2b_like, moe_keqv) text-decoder tensors changed by
                       `merge_and_unload()`, under the base checkpoint's tensor names

It also re-derives everything from the saved files with the formulas of docs/peft-layout.md
(plain torch, no PEFT) and checks them against PEFT's forward and merge.

Usage:
    python tests/reference/peft_goldens.py              # (re)write tests/fixtures/*/peft/
    python tests/reference/peft_goldens.py --only dense # subset (comma separated)
    python tests/reference/peft_goldens.py --check      # regenerate in a temp dir and compare

Everything is deterministic (fixed seeds, CPU, float32, one thread).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

# PEFT keeps a list target_modules as a Python set and writes it to adapter_config.json in set
# iteration order, which depends on the string hash seed: pin it so the file bytes are stable.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from safetensors.torch import load_file, save_file

import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

REPO = Path(__file__).resolve().parents[2]
FIXTURES_REL = Path("tests") / "fixtures"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Per-fixture LoRA setups. b_std = std of the random lora_B entries (lora_A is drawn from PEFT's
# own default range U(-1/sqrt(in), 1/sqrt(in))); chosen so logits change by roughly 5-30 %.
SETUPS: dict[str, dict] = {
    "dense": dict(seed=11, b_std=0.015, merged=True,
                  lora=dict(r=4, lora_alpha=8, target_modules=ALL7, task_type="CAUSAL_LM")),
    # a subset of layers: 1 (sliding), 2 (full, KV donor of shared layers 4/6), 5 (KV-shared
    # sliding, double-wide MLP; has no k_proj/v_proj at all)
    "e2b_like": dict(seed=12, b_std=0.025, merged=True,
                     lora=dict(r=4, lora_alpha=8, target_modules=ALL7, layers_to_transform=[1, 2, 5],
                               task_type="CAUSAL_LM")),
    # 3-D expert parameters through target_parameters (lora.ParamWrapper)
    "moe_keqv": dict(seed=13, b_std=0.05, merged=True,
                     lora=dict(r=4, lora_alpha=8, target_modules=ALL7,
                               target_parameters=["experts.gate_up_proj", "experts.down_proj"],
                               task_type="CAUSAL_LM")),
    # rsLoRA (scale alpha/sqrt(r)) with r=8
    "keqv_bias_untied": dict(seed=14, b_std=0.03, merged=False,
                             lora=dict(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL7,
                                       task_type="CAUSAL_LM")),
    # regex string target_modules (re.fullmatch on the module name); non-integer scale 3/2
    "per_layer_config": dict(seed=15, b_std=0.05, merged=False,
                             lora=dict(r=2, lora_alpha=3, target_modules=r".*\.(q_proj|v_proj|down_proj)",
                                       task_type="CAUSAL_LM")),
    # language-model-only regex (PEFT's own gemma4 default is r".*language_model\..*\.(q_proj|v_proj)")
    "multimodal": dict(seed=16, b_std=0.05, merged=False,
                       lora=dict(r=4, lora_alpha=8,
                                 target_modules=r".*language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                                 task_type="CAUSAL_LM")),
    # plain list, no task_type (adapter_config gets auto_mapping, task_type null)
    "bidirectional": dict(seed=17, b_std=0.05, merged=False,
                          lora=dict(r=4, lora_alpha=8, target_modules=ALL7)),
}

# order in which Gemma4TextExperts defines its parameters; PEFT wraps them in this order, so the
# first targeted one is the innermost ParamWrapper
EXPERT_PARAM_ORDER = ["gate_up_proj", "down_proj"]


# --------------------------------------------------------------------------------------
# Formulas of docs/peft-layout.md, straight from the saved files (no PEFT involved)
# --------------------------------------------------------------------------------------


def lora_scale(cfg: dict) -> float:
    assert not cfg.get("rank_pattern") and not cfg.get("alpha_pattern")
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg["use_rslora"] else alpha / r


def expert_delta(A: torch.Tensor, B: torch.Tensor, E: int, scale: float, interleaved_b: bool = True) -> torch.Tensor:
    """Delta for a 3-D expert parameter W [E, out, in] (Gemma 4: out x in per expert).

    A [E*r, in]: rows e*r .. e*r+r-1 belong to expert e (expert-major).
    B [out, E*r]: column k*E + e is rank k of expert e (rank-major, interleaved).
    delta[e] = scale * sum_k B[:, k*E+e] (x) A[e*r+k, :]
    """
    r = A.shape[0] // E
    out = []
    for e in range(E):
        Ae = A[e * r:(e + 1) * r]
        cols = [k * E + e for k in range(r)] if interleaved_b else list(range(e * r, (e + 1) * r))
        out.append(scale * (B[:, cols] @ Ae))
    return torch.stack(out)


def adapter_to_base_keys(adapter: dict, cfg: dict) -> dict[str, tuple[str, str | None]]:
    """Map each saved module prefix (key without .lora_A.weight) to (base tensor name, expert param or None)."""
    tp = cfg.get("target_parameters") or []
    targeted_expert = [p for p in EXPERT_PARAM_ORDER if any(t == f"experts.{p}" or t.endswith(f".experts.{p}") for t in tp)]
    out = {}
    for k in adapter:
        if not k.endswith(".lora_A.weight"):
            continue
        mod = k[: -len(".lora_A.weight")]
        assert mod.startswith("base_model.model."), k
        mod = mod[len("base_model.model."):]
        depth = 0
        while mod.endswith(".base_layer"):
            mod = mod[: -len(".base_layer")]
            depth += 1
        if mod.endswith(".experts"):
            # outermost wrapper = last targeted parameter; each .base_layer goes one further in
            pname = targeted_expert[::-1][depth]
            out[k[: -len(".lora_A.weight")]] = (f"{mod}.{pname}", pname)
        else:
            assert depth == 0, k
            out[k[: -len(".lora_A.weight")]] = (f"{mod}.weight", None)
    return out


def manual_merge(base_sd: dict, adapter: dict, cfg: dict, interleaved_b: bool = True,
                 dtype=torch.float32) -> dict:
    """Return {base tensor name: merged f32 tensor} for every targeted tensor."""
    s = lora_scale(cfg)
    merged = {}
    for mod, (name, pname) in adapter_to_base_keys(adapter, cfg).items():
        A = adapter[f"{mod}.lora_A.weight"].double()
        B = adapter[f"{mod}.lora_B.weight"].double()
        W = base_sd[name].double()
        if pname is None:
            assert A.shape[1] == W.shape[1] and B.shape[0] == W.shape[0]
            merged[name] = (W + s * (B @ A)).to(dtype)
        else:
            E = W.shape[0]
            assert A.shape == (E * cfg["r"], W.shape[2]) and B.shape == (W.shape[1], E * cfg["r"]), (name, A.shape, B.shape, W.shape)
            merged[name] = (W + expert_delta(A, B, E, s, interleaved_b)).to(dtype)
    return merged


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def model_class(fixture_dir: Path):
    arch = json.loads((fixture_dir / "config.json").read_text())["architectures"][0]
    return {"Gemma4ForCausalLM": Gemma4ForCausalLM,
            "Gemma4ForConditionalGeneration": Gemma4ForConditionalGeneration}[arch]


def load_base(rel_dir: str):
    cls = model_class(REPO / rel_dir)
    m = cls.from_pretrained(rel_dir, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def text_model(m):
    inner = m.model if not isinstance(m, PeftModel) else m.base_model.model.model
    return inner.language_model if hasattr(inner, "language_model") else inner


def router_min_gap(model, ids, k):
    """Smallest gap between the k-th and (k+1)-th router logit over all tokens and layers."""
    gaps, hs = [], []

    def hook(m, a, o):
        lp = torch.sort(torch.log(o[0].double()), dim=-1, descending=True).values
        gaps.append((lp[..., k - 1] - lp[..., k]).min().item())

    for layer in text_model(model).layers:
        hs.append(layer.router.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hs:
        h.remove()
    return min(gaps)


def rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def fill_random(pm, seed: int, b_std: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if not p.requires_grad:
                continue
            if ".lora_A." in n:
                bound = 1.0 / math.sqrt(p.shape[1])  # PEFT's kaiming_uniform(a=sqrt(5)) range
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            elif ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * b_std)
            else:
                raise RuntimeError(f"unexpected trainable parameter {n}")


@contextlib.contextmanager
def true_float64():
    """HF's Gemma 4 code upcasts to float32 in RMSNorm (`x.float()`) and softmax
    (`dtype=torch.float32`), which would round a float64 model to float32 precision there.
    Inside this context those upcasts leave float64 tensors alone, so a float64 forward really
    is float64 (used only for the exactness checks; the goldens themselves are float32)."""
    orig_float, orig_softmax = torch.Tensor.float, torch.nn.functional.softmax

    def keep_f64_float(self, *a, **k):
        return self if self.dtype == torch.float64 else orig_float(self, *a, **k)

    def keep_f64_softmax(input, *a, **k):
        if input.dtype == torch.float64 and k.get("dtype") == torch.float32:
            k["dtype"] = torch.float64
        return orig_softmax(input, *a, **k)

    torch.Tensor.float, torch.nn.functional.softmax = keep_f64_float, keep_f64_softmax
    try:
        yield
    finally:
        torch.Tensor.float, torch.nn.functional.softmax = orig_float, orig_softmax


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# One fixture
# --------------------------------------------------------------------------------------


def generate(name: str, setup: dict, out_root: Path) -> dict:
    rel_dir = str(FIXTURES_REL / name)  # repo-relative: ends up as base_model_name_or_path
    out = out_root / name / "peft"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    base_golden = load_file(str(REPO / rel_dir / "golden.safetensors"))
    ids = base_golden["input_ids"]
    base_model = load_base(rel_dir)
    tcfg = base_model.config.get_text_config()
    base_sd = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
    with torch.no_grad():
        base_logits = base_model(input_ids=ids, use_cache=False).logits
    checks = {"base_logits_vs_fixture_golden_maxabs": (base_logits - base_golden["logits"]).abs().max().item()}
    assert checks["base_logits_vs_fixture_golden_maxabs"] < 1e-5

    torch.manual_seed(setup["seed"])
    lcfg = LoraConfig(lora_dropout=0.0, **copy.deepcopy(setup["lora"]))
    pm = get_peft_model(base_model, lcfg)
    pm.eval()
    # MoE: redraw the adapter until top-k routing of the *adapted* model is decisive everywhere
    # (k-th vs (k+1)-th router logit gap > 0.05 for every token and layer), as generate.py does
    # for the base model, so expert choice never hinges on float noise in a reimplementation
    attempt = 0
    while True:
        fill_random(pm, setup["seed"] + 1000 * attempt, setup["b_std"])
        if not tcfg.enable_moe_block:
            break
        gap = router_min_gap(pm, ids, tcfg.top_k_experts)
        if gap > 0.05:
            checks["router_min_topk_gap_lora"] = gap
            break
        attempt += 1
        assert attempt < 200, "no decisive routing found"
    checks["lora_init_attempt"] = attempt

    # ---- forward + backward --------------------------------------------------------
    pm.zero_grad(set_to_none=True)
    outp = pm(input_ids=ids, labels=ids, use_cache=False)
    loss = outp.loss
    loss.backward()
    lora_logits = outp.logits.detach().float().contiguous()
    assert math.isfinite(loss.item())
    lp = torch.log_softmax(lora_logits[:, :-1].double(), -1)
    ce = -lp.gather(-1, ids[:, 1:, None]).squeeze(-1).mean().item()
    checks["loss_vs_manual_ce"] = abs(ce - loss.item())
    assert checks["loss_vs_manual_ce"] < 1e-4
    checks["rel_l2_lora_vs_base_logits"] = rel_l2(lora_logits, base_golden["logits"])
    assert 1e-3 < checks["rel_l2_lora_vs_base_logits"] < 0.5, checks

    grads = {}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            grads[n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)

    # ---- save exactly as PEFT does ------------------------------------------------
    with tempfile.TemporaryDirectory() as td:
        pm.save_pretrained(td)
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(Path(td) / f, out / f)
    adapter = load_file(str(out / "adapter_model.safetensors"))
    cfg_json = json.loads((out / "adapter_config.json").read_text())
    grad_sd = get_peft_model_state_dict(pm, state_dict=grads)
    assert set(grad_sd) == set(adapter), sorted(set(grad_sd) ^ set(adapter))
    for k, v in adapter.items():
        assert v.dtype == torch.float32 and grad_sd[k].shape == v.shape
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in adapter)

    # the adapter files alone reproduce the PEFT model
    reloaded = PeftModel.from_pretrained(load_base(rel_dir), str(out)).eval()
    with torch.no_grad():
        checks["reload_logits_maxabs"] = (reloaded(input_ids=ids, use_cache=False).logits - lora_logits).abs().max().item()
    assert checks["reload_logits_maxabs"] == 0.0, checks
    del reloaded

    # ---- independent merge from the files (docs/peft-layout.md formulas) ------------
    # float32 logits of these fixtures carry up to ~1e-4 absolute rounding noise (large hidden
    # states, several layers), so exact equality of "LoRA forward" and "merged forward" is
    # asserted in (true) float64; the float32 differences are recorded and loosely bounded.
    with torch.no_grad(), true_float64():
        pm64 = copy.deepcopy(pm).double().eval()
        if tcfg.enable_moe_block:  # torch grouped_mm has no float64 kernel: plain per-expert loop
            pm64.base_model.model.set_experts_implementation("eager")
        pm64.zero_grad(set_to_none=True)
        with torch.enable_grad():
            out64 = pm64(input_ids=ids, labels=ids, use_cache=False)
            out64.loss.backward()
        lora64 = out64.logits.detach()
        grad64 = get_peft_model_state_dict(pm64, state_dict={n: p.grad for n, p in pm64.named_parameters() if p.requires_grad})
    # float32 rounding noise of the goldens (what a float32 reimplementation can hope to match)
    checks["f32_lora_logits_vs_f64_maxabs"] = (lora_logits.double() - lora64).abs().max().item()
    checks["f32_lora_loss_vs_f64_abs"] = abs(loss.item() - out64.loss.item())
    checks["f32_grad_vs_f64_max_rel"] = max(((grad_sd[k].double() - grad64[k]).abs().max() / grad64[k].abs().max()).item()
                                            for k in grad_sd)
    has_experts = any(p is not None for _, p in adapter_to_base_keys(adapter, cfg_json).values())
    plain = load_base(rel_dir)
    with torch.no_grad():
        mine = manual_merge(base_sd, adapter, cfg_json)
        for k, v in mine.items():
            plain.state_dict()[k].copy_(v)
        checks["f32_manual_merge_logits_maxabs"] = (plain(input_ids=ids, use_cache=False).logits - lora_logits).abs().max().item()
    with torch.no_grad(), true_float64():
        plain = plain.double()
        if tcfg.enable_moe_block:
            plain.set_experts_implementation("eager")
        for k, v in manual_merge(base_sd, adapter, cfg_json, dtype=torch.float64).items():
            plain.state_dict()[k].copy_(v)
        checks["f64_manual_merge_logits_maxabs"] = (plain(input_ids=ids, use_cache=False).logits - lora64).abs().max().item()
        assert checks["f64_manual_merge_logits_maxabs"] < 1e-9, checks
        if has_experts:
            # negative control: reading lora_B's columns expert-major must NOT reproduce PEFT
            for k, v in manual_merge(base_sd, adapter, cfg_json, interleaved_b=False, dtype=torch.float64).items():
                plain.state_dict()[k].copy_(v)
            checks["f64_expert_major_B_control_maxabs"] = (plain(input_ids=ids, use_cache=False).logits - lora64).abs().max().item()
            assert checks["f64_expert_major_B_control_maxabs"] > 1e-2, checks
    del plain
    assert checks["f32_manual_merge_logits_maxabs"] < 5e-4, checks

    # ---- merged weights -----------------------------------------------------------
    merged_written = []
    if setup["merged"]:
        with torch.no_grad(), true_float64():
            mm64 = pm64.merge_and_unload().eval()
            checks["f64_peft_merged_logits_maxabs"] = (mm64(input_ids=ids, use_cache=False).logits - lora64).abs().max().item()
        assert checks["f64_peft_merged_logits_maxabs"] < 1e-9, checks
        mm = pm.merge_and_unload().eval()
        with torch.no_grad():
            checks["f32_peft_merged_logits_maxabs"] = (mm(input_ids=ids, use_cache=False).logits - lora_logits).abs().max().item()
        assert checks["f32_peft_merged_logits_maxabs"] < 5e-4, checks
        msd = mm.state_dict()
        assert set(msd) == set(base_sd)
        changed = {k: msd[k].detach().float().contiguous() for k in sorted(msd) if not torch.equal(msd[k], base_sd[k])}
        assert set(changed) == set(mine), sorted(set(changed) ^ set(mine))
        checks["f32_peft_merge_vs_manual_merge_maxabs"] = max((changed[k] - mine[k]).abs().max().item() for k in changed)
        assert checks["f32_peft_merge_vs_manual_merge_maxabs"] < 1e-6, checks
        on_disk = set()
        for f in (REPO / rel_dir).glob("model*.safetensors"):
            on_disk.update(load_file(str(f)).keys())
        assert set(changed) <= on_disk, sorted(set(changed) - on_disk)
        save_file(changed, str(out / "merged.safetensors"), metadata={"info": json.dumps({
            "fixture": name, "peft_version": peft.__version__,
            "note": "text-decoder tensors changed by PeftModel.merge_and_unload() (float32 model), base checkpoint names"},
            sort_keys=True)})
        merged_written = sorted(changed)
    del pm64

    # ---- golden -------------------------------------------------------------------
    golden = {"input_ids": ids.contiguous(), "lora_logits": lora_logits,
              "lora_loss": loss.detach().float().reshape(1)}
    for k in sorted(grad_sd):
        golden[f"grad.{k}"] = grad_sd[k].float().contiguous()
    meta = {"info": json.dumps({
        "fixture": name,
        "peft_version": peft.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "scaling": lora_scale(cfg_json),
        "lora_A_init": "U(-1/sqrt(in), 1/sqrt(in))",
        "lora_B_init": f"N(0, {setup['b_std']}^2)",
        "seed": setup["seed"] + 1000 * checks["lora_init_attempt"],
        "note": "float32, eager attention, lora_dropout=0; loss = mean CE over all B*(T-1) positions, labels=input_ids; "
                "grad.K = d lora_loss / d K for every key K of adapter_model.safetensors (same shape/orientation)",
    }, sort_keys=True)}
    save_file(golden, str(out / "golden.safetensors"), metadata=meta)

    zero_grads = sorted(k for k, g in grad_sd.items() if not g.abs().max() > 0)
    return {
        "name": name,
        "files": {p.name: p.stat().st_size for p in sorted(out.iterdir())},
        "n_adapter_tensors": len(adapter),
        "scaling": lora_scale(cfg_json),
        "loss": loss.item(),
        "base_loss": base_golden["loss"].item(),
        "zero_grad_keys": zero_grads,
        "merged_tensors": len(merged_written),
        "checks": checks,
    }


def compare(ref: Path, new: Path, names) -> list[str]:
    problems = []
    for n in names:
        for f in sorted((new / n / "peft").iterdir()):
            r = ref / n / "peft" / f.name
            if not r.exists():
                problems.append(f"missing: {r}")
            elif f.name == "adapter_config.json":
                if sha256(r) != sha256(f):
                    problems.append(f"{r}: bytes differ")
            else:
                a, b = load_file(str(r)), load_file(str(f))
                if set(a) != set(b):
                    problems.append(f"{r}: tensor names differ")
                    continue
                for k in a:
                    if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape:
                        problems.append(f"{r}:{k}: dtype/shape differ")
                    elif not torch.allclose(a[k].double(), b[k].double(), rtol=1e-4, atol=1e-5):
                        problems.append(f"{r}:{k}: max diff {(a[k].double() - b[k].double()).abs().max().item():.3g}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", type=str, default="")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with tests/fixtures")
    args = ap.parse_args(argv)
    transformers.logging.set_verbosity_error()
    os.chdir(REPO)  # fixture paths are repo-relative (base_model_name_or_path in adapter_config.json)

    names = [n for n in SETUPS if not args.only or n in args.only.split(",")]
    target = Path(tempfile.mkdtemp(prefix="gemma4-peft-")) if args.check else REPO / FIXTURES_REL
    total = 0
    for n in names:
        s = generate(n, SETUPS[n], target)
        size = sum(s["files"].values())
        total += size
        print(f"== {n}: {s['n_adapter_tensors']} adapter tensors, scaling {s['scaling']:.4f}, "
              f"loss {s['loss']:.6f} (base {s['base_loss']:.6f}), merged tensors {s['merged_tensors']}, "
              f"{size / 1024:.1f} KiB")
        print(f"   files {s['files']}")
        print(f"   checks {s['checks']}")
        if s["zero_grad_keys"]:
            print(f"   all-zero gradients: {s['zero_grad_keys']}")
    print(f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}; "
          f"total {total / 1024 / 1024:.2f} MiB")
    if args.check:
        problems = compare(REPO / FIXTURES_REL, target, names)
        shutil.rmtree(target)
        if problems:
            print("\n".join(problems))
            print(f"CHECK FAILED: {len(problems)} differences")
            return 1
        print("CHECK OK: regenerated PEFT goldens match the committed ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
