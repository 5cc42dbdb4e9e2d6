#!/usr/bin/env python3
"""Independent re-implementation of the Gemma 4 text forward pass, written from the spec
(/work/shared/docs/gemma4-architecture.md §2-§4, §7, §9) and docs/reference-findings.md,
using plain torch only (no transformers import). It reads the fixture directories exactly as a
loader would (config.json or config_alt_spelling.json, model.safetensors or the shards named in
model.safetensors.index.json; never a glob) and compares with golden.safetensors.

This is the executable form of the rules the Rust loader/forward must follow.

    python tests/reference/spec_check.py [fixtures_dir]
    python tests/reference/spec_check.py --mutations   # prove the fixtures catch typical mistakes
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

torch.set_num_threads(1)
S, F = "sliding_attention", "full_attention"

# --mutations: deliberately wrong variants; each must be caught by at least one fixture
MUT = ""

# HF (transformers 5.24.0) Gemma4TextConfig defaults for keys that may be missing
TEXT_DEFAULTS = dict(
    vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=30,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, global_head_dim=512,
    num_global_key_value_heads=None, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
    pad_token_id=0, tie_word_embeddings=True, rope_parameters=None, attention_bias=False,
    sliding_window=512, layer_types=None, final_logit_softcapping=None,
    use_bidirectional_attention=None, vocab_size_per_layer_input=262144,
    hidden_size_per_layer_input=256, attention_k_eq_v=False, num_kv_shared_layers=0,
    enable_moe_block=False, use_double_wide_mlp=False, num_experts=None, top_k_experts=None,
    moe_intermediate_size=None,
)
DEFAULT_ROPE = {
    S: {"rope_type": "default", "rope_theta": 10000.0},
    F: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0},
}


class Cfg:
    def __init__(self, raw: dict):
        self.multimodal = raw.get("model_type") == "gemma4"
        t = dict(raw["text_config"]) if self.multimodal else dict(raw)
        c = {k: t.get(k, v) for k, v in TEXT_DEFAULTS.items()}
        self.__dict__.update(c)
        if self.multimodal and "tie_word_embeddings" in raw:
            self.tie_word_embeddings = raw["tie_word_embeddings"]
        L = self.num_hidden_layers
        if self.layer_types is None:
            self.layer_types = [F if (i + 1) % 6 == 0 else S for i in range(L)]
        self.layer_types = list(self.layer_types)
        if MUT != "no_force_last_full":
            self.layer_types[-1] = F  # HF forces the last layer to full attention
        if self.use_bidirectional_attention == "all":
            raise NotImplementedError
        if self.rope_parameters is None:
            self.rope_parameters = DEFAULT_ROPE
        # per-layer head dim / kv heads: new spelling (per_layer_config) or legacy keys
        self.hd = [self.head_dim] * L
        self.nkv = [self.num_key_value_heads] * L
        plc = t.get("per_layer_config")
        if plc is not None:
            for k, ov in plc.items():
                i = int(k)
                self.hd[i] = ov.get("head_dim", self.hd[i])
                self.nkv[i] = ov.get("num_key_value_heads", self.nkv[i])
        else:
            for i, lt in enumerate(self.layer_types):
                if lt == F:
                    self.hd[i] = self.global_head_dim
                    if self.attention_k_eq_v and self.num_global_key_value_heads is not None:
                        self.nkv[i] = self.num_global_key_value_heads
        self.first_shared = L - self.num_kv_shared_layers
        self.donor = {}
        for i in range(self.first_shared):
            self.donor[self.layer_types[i]] = i  # last non-shared layer of each type wins
        self.prefix = "model.language_model." if self.multimodal else "model."


def load_weights(d: Path) -> dict:
    idx = d / "model.safetensors.index.json"
    if idx.exists():
        files = sorted(set(json.loads(idx.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        w.update(load_file(str(d / f)))
    return {k: v.float() for k, v in w.items()}


def rms(x, w=None, eps=1e-6):
    y = x * torch.pow(x.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    if MUT == "norm_one_plus_w" and w is not None:
        return y * (1 + w)
    return y * w if w is not None else y


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def inv_freq(rp: dict, hd: int):
    theta = rp["rope_theta"]
    if rp["rope_type"] == "default":
        return 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    if rp["rope_type"] == "proportional":
        p = rp.get("partial_rotary_factor", 1.0)
        r = int(p * hd // 2)
        denom = 2 * r if MUT == "partial_rope_exponent" else hd
        f = 1.0 / theta ** (torch.arange(0, 2 * r, 2, dtype=torch.float32) / denom)
        f = torch.cat([f, torch.zeros(hd // 2 - r)])
        return f if MUT == "ignore_rope_factor" else f / rp.get("factor", 1.0)
    raise NotImplementedError(rp["rope_type"])


def rope(x, pos, f):  # x [B,T,N,hd]
    ang = pos[:, None].float() * f[None, :]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def forward(c: Cfg, W: dict, ids: torch.Tensor, key_mask: torch.Tensor | None = None):
    P = c.prefix
    g = lambda n: W[P + n]
    B, T = ids.shape
    H, L, D = c.hidden_size, c.num_hidden_layers, c.hidden_size_per_layer_input
    out = {}
    E = g("embed_tokens.weight")
    h = E[ids] * (1.0 if MUT == "no_embed_scale" else torch.tensor(H ** 0.5, dtype=torch.float32))
    out["embeddings"] = h
    if D:
        tok = (g("embed_tokens_per_layer.weight")[ids] * torch.tensor(D ** 0.5)).reshape(B, T, L, D)
        ctx = (h @ g("per_layer_model_projection.weight").T) * torch.tensor(H ** -0.5)
        ctx = rms(ctx.reshape(B, T, L, D), g("per_layer_projection_norm.weight"), c.rms_norm_eps)
        ple = (ctx + tok) * (1.0 if MUT == "no_ple_combine_scale" else torch.tensor(2.0 ** -0.5))
        out["per_layer_inputs"] = ple
    pos = torch.arange(T)
    q_idx, k_idx = pos[:, None], pos[None, :]
    W_ = c.sliding_window + (1 if MUT == "window_off_by_one" else 0)
    allowed = {F: (k_idx <= q_idx), S: (k_idx <= q_idx) & (q_idx - k_idx < W_)}
    masks = {}
    for t, a in allowed.items():
        a = a[None, None].expand(B, 1, T, T)
        if key_mask is not None:
            a = a & key_mask.bool()[:, None, None, :]
        masks[t] = torch.where(a, 0.0, torch.finfo(torch.float32).min)
    shared = {}
    Nq = c.num_attention_heads
    for i in range(L):
        lp = f"layers.{i}."
        lt, hd, nkv = c.layer_types[i], c.hd[i], c.nkv[i]
        has_bias = c.attention_bias
        lin = lambda x, n: x @ g(lp + n + ".weight").T + (g(lp + n + ".bias") if has_bias else 0)
        f = inv_freq(c.rope_parameters[lt], hd)
        r = h
        a = rms(h, g(lp + "input_layernorm.weight"), c.rms_norm_eps)
        q = rms(lin(a, "self_attn.q_proj").reshape(B, T, Nq, hd), g(lp + "self_attn.q_norm.weight"), c.rms_norm_eps)
        q = rope(q, pos, f)
        if i >= c.first_shared:
            k, v = shared[lt]
        else:
            kr = lin(a, "self_attn.k_proj").reshape(B, T, nkv, hd)
            keqv = c.attention_k_eq_v and lt == F
            vr = kr if keqv else lin(a, "self_attn.v_proj").reshape(B, T, nkv, hd)
            k = rope(rms(kr, g(lp + "self_attn.k_norm.weight"), c.rms_norm_eps), pos, f)
            v = vr if MUT == "no_v_norm" else rms(vr, None, c.rms_norm_eps)
            if MUT == "keqv_v_after_knorm" and keqv:
                v = rms(kr, g(lp + "self_attn.k_norm.weight"), c.rms_norm_eps)
            if MUT == "donor_last_nonshared_any_type":
                shared[S] = shared[F] = (k, v)
            elif MUT == "donor_first_of_type":
                shared.setdefault(lt, (k, v))
            elif c.donor.get(lt) == i:
                shared[lt] = (k, v)
        G = Nq // k.shape[2]
        kk = k.repeat_interleave(G, dim=2).transpose(1, 2)
        vv = v.repeat_interleave(G, dim=2).transpose(1, 2)
        scale = hd ** -0.5 if MUT == "attn_scale_rsqrt_hd" else 1.0
        s = q.transpose(1, 2) @ kk.transpose(2, 3) * scale + masks[lt]
        o = (torch.softmax(s, -1) @ vv).transpose(1, 2).reshape(B, T, Nq * hd)
        o = lin(o, "self_attn.o_proj")
        h = r + rms(o, g(lp + "post_attention_layernorm.weight"), c.rms_norm_eps)
        r = h
        x = rms(h, g(lp + "pre_feedforward_layernorm.weight"), c.rms_norm_eps)
        m = (gelu_tanh(x @ g(lp + "mlp.gate_proj.weight").T) * (x @ g(lp + "mlp.up_proj.weight").T)) @ g(lp + "mlp.down_proj.weight").T
        if c.enable_moe_block:
            m = rms(m, g(lp + "post_feedforward_layernorm_1.weight"), c.rms_norm_eps)
            z = rms(h, None, c.rms_norm_eps) * g(lp + "router.scale") * torch.tensor(H ** -0.5)
            logits = z @ g(lp + "router.proj.weight").T
            top, idx = torch.topk(logits, c.top_k_experts, dim=-1)
            wts = torch.softmax(top, -1) * g(lp + "router.per_expert_scale")[idx]
            # NB: a per-token common factor on the expert weights (e.g. skipping HF's top-k
            # renormalisation) is cancelled by post_feedforward_layernorm_2, so it is not testable.
            if MUT == "no_per_expert_scale":
                wts = torch.softmax(top, -1)
            if MUT == "router_no_scale":
                z = rms(h, None, c.rms_norm_eps) * torch.tensor(H ** -0.5)
                top, idx = torch.topk(z @ g(lp + "router.proj.weight").T, c.top_k_experts, dim=-1)
                wts = torch.softmax(top, -1) * g(lp + "router.per_expert_scale")[idx]
            if MUT == "router_normed_input":
                z = rms(h, g(lp + "pre_feedforward_layernorm.weight"), c.rms_norm_eps) * g(lp + "router.scale") * torch.tensor(H ** -0.5)
                top, idx = torch.topk(z @ g(lp + "router.proj.weight").T, c.top_k_experts, dim=-1)
                wts = torch.softmax(top, -1) * g(lp + "router.per_expert_scale")[idx]
            x2 = rms(h, g(lp + "pre_feedforward_layernorm_2.weight"), c.rms_norm_eps)
            GU, DN = g(lp + "experts.gate_up_proj"), g(lp + "experts.down_proj")
            Ie = c.moe_intermediate_size
            ex = torch.zeros_like(h)
            for j in range(c.top_k_experts):
                e = idx[..., j]
                gu = torch.einsum("bth,btoh->bto", x2, GU[e])
                y = gelu_tanh(gu[..., :Ie]) * gu[..., Ie:]
                ex = ex + wts[..., j, None] * torch.einsum("bti,btoi->bto", y, DN[e])
            m = m + rms(ex, g(lp + "post_feedforward_layernorm_2.weight"), c.rms_norm_eps)
        h = r + rms(m, g(lp + "post_feedforward_layernorm.weight"), c.rms_norm_eps)
        if D:
            r = h
            gg = gelu_tanh(h @ g(lp + "per_layer_input_gate.weight").T) * ple[:, :, i, :]
            gg = rms(gg @ g(lp + "per_layer_projection.weight").T, g(lp + "post_per_layer_input_norm.weight"), c.rms_norm_eps)
            h = r + gg
        if MUT != "no_layer_scalar":
            h = h * g(lp + "layer_scalar")
        out[f"layer_out.{i}"] = h
    h = rms(h, g("norm.weight"), c.rms_norm_eps)
    out["final_norm"] = h
    head = E if (c.tie_word_embeddings or MUT == "always_tied") else W["lm_head.weight"]
    logits = h @ head.T
    if c.final_logit_softcapping is not None:
        cap = c.final_logit_softcapping
        logits = cap * torch.tanh(logits / cap)
    out["logits"] = logits
    lp_ = torch.log_softmax(logits[:, :-1], -1)
    out["loss"] = -lp_.gather(-1, ids[:, 1:, None]).mean().reshape(1)
    return out


def check_fixture(d: Path, quiet: bool = False) -> list[str]:
    gold = load_file(str(d / "golden.safetensors"))
    W = load_weights(d)
    errs = []
    cfg_files = ["config.json"] + [f for f in ("config_alt_spelling.json", "config_minimal.json") if (d / f).exists()]
    for cf in cfg_files:
        c = Cfg(json.loads((d / cf).read_text()))
        # loader rule: drop K/V tensors of KV-shared layers if a checkpoint carries them
        for i in range(c.first_shared, c.num_hidden_layers):
            for n in ("k_proj", "v_proj", "k_norm"):
                for suf in (".weight", ".bias"):
                    W.pop(f"{c.prefix}layers.{i}.self_attn.{n}{suf}", None)
        with torch.no_grad():
            out = forward(c, W, gold["input_ids"])
            pout = forward(c, W, gold["pad_input_ids"], gold["pad_attention_mask"])
        worst = 0.0
        for k, v in out.items():
            ref = gold[k]
            err = ((v - ref).abs().max() / (ref.abs().max() + 1e-6)).item()
            worst = max(worst, err)
            if err > 1e-4:
                errs.append(f"{d.name}/{cf}: {k} rel err {err:.3g}")
        valid = gold["pad_attention_mask"].bool()
        perr = ((pout["logits"] - gold["pad_logits"]).abs()[valid].max() / gold["pad_logits"].abs().max()).item()
        if perr > 1e-4:
            errs.append(f"{d.name}/{cf}: pad_logits rel err {perr:.3g}")
        if not quiet:
            print(f"{d.name:18s} {cf:26s} worst rel err {max(worst, perr):.2e}")
    return errs


MUTATIONS = ["partial_rope_exponent", "ignore_rope_factor", "norm_one_plus_w", "no_embed_scale",
             "no_ple_combine_scale", "window_off_by_one", "no_v_norm", "keqv_v_after_knorm",
             "donor_last_nonshared_any_type", "attn_scale_rsqrt_hd", "no_per_expert_scale", "router_no_scale", "donor_first_of_type",
             "router_normed_input", "no_layer_scalar", "always_tied", "no_force_last_full"]


def run_mutations(root: Path) -> int:
    """Every deliberately wrong variant must be detected by at least one fixture."""
    global MUT
    missed = []
    for m in MUTATIONS:
        MUT = m
        caught = []
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                if check_fixture(d, quiet=True):
                    caught.append(d.name)
            except Exception as e:  # a crash (e.g. shape error) also counts as caught
                caught.append(f"{d.name}({type(e).__name__})")
        print(f"mutation {m:32s} caught by: {', '.join(caught) or 'NOTHING'}")
        if not caught:
            missed.append(m)
    MUT = ""
    print("mutations:", "all caught" if not missed else f"MISSED {missed}")
    return 1 if missed else 0


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "tests" / "fixtures"
    if "--mutations" in sys.argv:
        return run_mutations(root)
    errs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        errs += check_fixture(d)
    for e in errs:
        print("FAIL", e)
    print("spec_check:", "OK" if not errs else f"{len(errs)} failures")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
