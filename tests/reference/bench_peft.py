#!/usr/bin/env python3
"""Peer baseline for `gemma4-tune bench`: transformers + PEFT LoRA training, prefill and decode
timing of a random-weight Gemma 4 text model (`Gemma4ForCausalLM`), one JSON object on stdout.

Pinned: transformers==5.24.0, peft==0.21.2 (tests/reference/requirements.txt); torch 2.11+ CUDA
on the GPU machine. From the repository root:

    python3 tests/reference/bench_peft.py --preset e2b --batch 4 --seq 2048 --json /tmp/peft.json
    python3 tests/reference/bench_peft.py --preset e2b --seq 2048 --count-only   # meta device, no run
    /work/venv-ref/bin/python tests/reference/bench_peft.py --preset tiny --batch 2 --seq 32 \\
        --steps 2 --warmup 1 --device cpu --dtype f32                            # CPU smoke test

The model is built directly on the target device in the target dtype (torch.device context +
`_from_config(dtype=...)`), random init seeded by `--seed`. PEFT keeps its default
`autocast_adapter_dtype=True`: LoRA weights are float32 on a bf16/f16 base.

Train step (as `gemma4-tune bench`): get_peft_model(LoraConfig(r, alpha, targets, dropout 0, bias
none)); fresh uniform random token ids per step (one batch for all with --repeat-batch), labels =
ids (HF shifts inside: seq-1 targets a row); forward -> loss -> backward -> clip grad norm 1.0 ->
AdamW(--lr, default 1e-4, weight decay 0) on the
LoRA params -> zero_grad. `--warmup` untimed steps, then `--steps` steps each timed (wall clock
between torch.cuda.synchronize() calls); loss_first/loss_last: first/last *timed* step. Peak
memory: reset before the first warm-up step, read after the last step.
Prefill: no_grad forward of the PEFT model (adapter active) over a fresh batch x seq, use_cache
False, logits for the last position only (`logits_to_keep` as a position *tensor*: an int would
let transformers run the KV-shared layers of E2B/E4B on the last position only); 1 warm-up, then
`--prefill-runs` timed runs (mean). Decode: PEFT model (adapter unmerged), a random
`--prompt`-token prompt of `--decode-batch` rows into the KV cache (untimed), then
`--decode-tokens` greedy steps fed back one token at a time; only those are timed (after one
short warm-up round). `--model` takes a preset name or a config path, like `gemma4-tune bench`.

FLOPs per token (the same accounting as the Rust side):
  linear  = 2 x (weight elements of every Linear a token passes: q/k/v/o (no k/v on KV-shared
            layers, no v on k_eq_v full layers), dense MLP gate/up/down at that layer's width
            (double on KV-shared layers with use_double_wide_mlp), MoE router + top_k/num_experts
            x all expert weights, PLE per-layer gate/projection + per_layer_model_projection,
            LM head e x vocab), counted from the instantiated modules.
  attn    = sum over layers of 4 * num_attention_heads * head_dim(layer) * ctx, ctx = mean keys
            per query: (seq+1)/2 for full causal, mean_{t<seq} min(t+1, W) for sliding window W.
  lora    = sum over adapted Linears of 2 * r * (in + out).
  forward = linear + attn + lora;  train = 2*linear + 3*attn + 3*lora (frozen base: forward plus
            input-gradient pass, no weight gradients; checkpointing recompute not counted);
  prefill = linear - 2*e*vocab (no LM head) + attn + lora.
  tflops  = flops_per_token * tokens_per_s / 1e12 (train and prefill).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import peft
import torch
import transformers
from transformers import Gemma4ForCausalLM, Gemma4TextConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4TextExperts

PRESETS = Path(__file__).resolve().parents[2] / "crates" / "gemma4-tune" / "presets"
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="e2b", help="name in crates/gemma4-tune/presets/")
    src.add_argument("--config", help="any config.json (its text_config is used if present)")
    src.add_argument("--model", help="preset name or config.json path (as gemma4-tune bench)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=None, help="default 2*rank")
    p.add_argument("--targets", default=TARGETS)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--repeat-batch", action="store_true", help="one batch every step (a falling loss)")
    p.add_argument("--decode-tokens", type=int, default=64, help="0: skip decode")
    p.add_argument("--decode-batch", type=int, default=None, help="default --batch")
    p.add_argument("--prompt", type=int, default=128, help="decode prompt length")
    p.add_argument("--prefill-runs", type=int, default=3, help="timed prefill runs (0: skip)")
    p.add_argument("--no-prefill", action="store_true")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, ...)")
    p.add_argument("--json", metavar="PATH", help="also write the JSON object here")
    p.add_argument("--count-only", action="store_true", help="meta device: print params + FLOPs")
    return p.parse_args()


def load_config(args) -> tuple[str, Gemma4TextConfig]:
    if args.model:
        preset = (PRESETS / f"{args.model}.json").exists()
        args.preset, args.config = (args.model, None) if preset else (args.preset, args.model)
    path = Path(args.config) if args.config else PRESETS / f"{args.preset}.json"
    if path.is_dir():
        path = path / "config.json"
    cfg = json.loads(path.read_text())
    cfg = cfg.get("text_config", cfg)
    for key in ("architectures", "dtype", "torch_dtype", "model_type", "transformers_version"):
        cfg.pop(key, None)
    return (args.config if args.config else args.preset), Gemma4TextConfig(**cfg)


def build(cfg: Gemma4TextConfig, device, dtype: torch.dtype, attn: str) -> Gemma4ForCausalLM:
    with torch.device(device):  # allocate (and randomly init) straight on the device, in dtype
        return Gemma4ForCausalLM._from_config(cfg, dtype=dtype, attn_implementation=attn)


def is_target(name: str, targets: list[str]) -> bool:  # PEFT's list matching rule
    return any(name == t or name.endswith("." + t) for t in targets)


def count(model: Gemma4ForCausalLM, cfg, seq: int, rank: int, targets: list[str]):
    """(params, flops_per_token) of the base model (before PEFT wraps it); see the docstring."""
    linear = lora = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            linear += mod.weight.numel()
            if is_target(name, targets):
                lora += rank * (mod.in_features + mod.out_features)
        elif isinstance(mod, Gemma4TextExperts):
            experts = mod.gate_up_proj.numel() + mod.down_proj.numel()
            linear += experts // cfg.num_experts * cfg.top_k_experts
    attn = 0.0
    for layer in model.model.layers:
        sa = layer.self_attn
        w = sa.sliding_window or seq
        ctx = sum(min(t + 1, w) for t in range(seq)) / seq  # (seq+1)/2 when w >= seq
        attn += 4 * cfg.num_attention_heads * sa.head_dim * ctx
    head = model.lm_head.weight.numel()
    # Stored tensors, as a checkpoint holds them: parameters (tied head once) + persistent buffers
    # (each layer's `layer_scalar`).
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    total = sum(p.numel() for p in model.parameters())
    total += sum(t.numel() for n, t in model.state_dict().items() if n not in names)
    flops = {
        "forward": 2 * linear + attn + 2 * lora,
        "train": 2 * (2 * linear) + 3 * attn + 3 * (2 * lora),
        "prefill": 2 * (linear - head) + attn + 2 * lora,
    }
    return {"total": total, "trainable": lora}, flops


def main() -> int:
    args = parse_args()
    transformers.logging.set_verbosity_error()
    name, cfg = load_config(args)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    alpha = float(args.alpha if args.alpha is not None else 2 * args.rank)
    dtype = DTYPES[args.dtype]

    if args.count_only:
        params, flops = count(build(cfg, "meta", dtype, args.attn), cfg, args.seq, args.rank, targets)
        return emit({"params": params, "flops_per_token": flops}, args.json)

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    def tokens(b: int, s: int) -> torch.Tensor:
        return torch.randint(0, cfg.vocab_size, (b, s), generator=gen).to(dev)

    t0 = time.perf_counter()
    model = build(cfg, dev, dtype, args.attn)
    sync()
    load_s = time.perf_counter() - t0
    params, flops = count(model, cfg, args.seq, args.rank, targets)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lcfg = peft.LoraConfig(r=args.rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0,
                           bias="none", task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lcfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == params["trainable"], "LoRA param count mismatch"
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    # ---- training ----
    batches = [tokens(args.batch, args.seq) for _ in range(1 if args.repeat_batch else args.warmup + args.steps)]
    batches = batches * (args.warmup + args.steps) if args.repeat_batch else batches
    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, losses = [], []
    for i, ids in enumerate(batches):
        sync()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
            losses.append(loss.item())
    step_s = sum(times) / len(times)
    train_tps = args.batch * args.seq / step_s
    memory = {"peak_allocated_bytes": None, "peak_reserved_bytes": None, "peak_gib": None,
              "method": "torch.cuda max_memory_reserved over training (allocated: max_memory_allocated)"}
    if cuda:
        alloc, reserved = torch.cuda.max_memory_allocated(dev), torch.cuda.max_memory_reserved(dev)
        memory.update(peak_allocated_bytes=alloc, peak_reserved_bytes=reserved, peak_gib=reserved / 2**30)
    del opt, batches, loss
    model.eval()
    if cuda:
        torch.cuda.empty_cache()

    # ---- prefill ----
    prefill = None
    if not args.no_prefill and args.prefill_runs > 0:
        batches = [tokens(args.batch, args.seq) for _ in range(1 + args.prefill_runs)]
        last = torch.tensor([args.seq - 1], device=dev)  # tensor, not int: no KV-shared shortcut
        runs = []
        with torch.no_grad():
            for i, ids in enumerate(batches):
                sync()
                t0 = time.perf_counter()
                model(input_ids=ids, use_cache=False, logits_to_keep=last)
                sync()
                if i:
                    runs.append(time.perf_counter() - t0)
        t = sum(runs) / len(runs)
        tps = ids.numel() / t
        prefill = {"tokens": ids.numel(), "time_s": t, "tokens_per_s": tps,
                   "tflops": flops["prefill"] * tps / 1e12}

    # ---- decode ----
    decode = None
    if not args.no_decode and args.decode_tokens > 0:
        db = args.decode_batch or args.batch

        @torch.no_grad()
        def run_decode(n: int) -> float:
            out = model(input_ids=tokens(db, args.prompt), use_cache=True, logits_to_keep=1)
            cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
            sync()
            t0 = time.perf_counter()
            for _ in range(n):
                out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
                cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
            sync()
            return time.perf_counter() - t0

        run_decode(min(4, args.decode_tokens))  # warm-up
        t = run_decode(args.decode_tokens)
        decode = {"batch": db, "prompt": args.prompt, "new_tokens": args.decode_tokens, "time_s": t,
                  "tokens_per_s": db * args.decode_tokens / t}

    result = {
        "tool": "transformers+peft",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "device": torch.cuda.get_device_name(dev) if cuda else dev.type,
        "preset": name,
        "settings": {"batch": args.batch, "seq": args.seq, "rank": args.rank, "alpha": alpha,
                     "targets": targets, "dtype": args.dtype,
                     "gradient_checkpointing": args.gradient_checkpointing,
                     "warmup": args.warmup, "steps": args.steps, "lr": args.lr,
                     "repeat_batch": args.repeat_batch, "attn": args.attn},
        "params": params,
        "flops_per_token": flops,
        "load_s": load_s,
        "train": {"step_s": step_s, "step_s_all": times, "tokens_per_s": train_tps,
                  "tflops": flops["train"] * train_tps / 1e12,
                  "loss_first": losses[0], "loss_last": losses[-1], "loss_all": losses},
        "prefill": prefill,
        "decode": decode,
        "memory": memory,
    }
    experts = model.get_base_model().config._experts_implementation
    print(f"[bench_peft] {name} on {result['device']} ({args.dtype}, attn={args.attn}, "
          f"experts={experts}): params {params['total'] / 1e9:.3f}B, LoRA {params['trainable'] / 1e6:.2f}M",
          file=sys.stderr)
    print(f"  train   {step_s:.4f} s/step  {train_tps:,.0f} tok/s  {result['train']['tflops']:.2f} TFLOP/s"
          f"  loss {losses[0]:.4f} -> {losses[-1]:.4f}"
          + (f"  peak {memory['peak_gib']:.2f} GiB" if cuda else ""), file=sys.stderr)
    if prefill:
        print(f"  prefill {prefill['time_s']:.4f} s  {prefill['tokens_per_s']:,.0f} tok/s"
              f"  {prefill['tflops']:.2f} TFLOP/s", file=sys.stderr)
    if decode:
        print(f"  decode  {decode['time_s']:.4f} s  {decode['tokens_per_s']:,.1f} tok/s "
              f"(batch {decode['batch']}, prompt {decode['prompt']})", file=sys.stderr)
    return emit(result, args.json)


def emit(obj: dict, path: str | None) -> int:
    text = json.dumps(obj, indent=1)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
