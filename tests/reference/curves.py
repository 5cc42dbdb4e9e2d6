#!/usr/bin/env python3
"""Two training runs' validation curves side by side (metrics.jsonl of `gemma4-tune train`).

    curves.py REFERENCE.jsonl OTHER.jsonl [--max-rel 0.1]

Prints step, both validation losses and their relative difference; exits 1 if a step both runs
evaluated differs by more than --max-rel (relative to the reference), or none is shared.
"""
import argparse
import json
import sys


def val(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "val_loss" in r:
            out[r["step"]] = r["val_loss"]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("other")
    p.add_argument("--max-rel", type=float, default=0.1)
    a = p.parse_args()
    ref, other = val(a.reference), val(a.other)
    steps = sorted(set(ref) & set(other))
    worst = 0.0
    print(f"{'step':>6} {'reference':>10} {'other':>10} {'rel':>8}")
    for s in steps:
        rel = abs(other[s] - ref[s]) / abs(ref[s])
        worst = max(worst, rel)
        print(f"{s:>6} {ref[s]:>10.4f} {other[s]:>10.4f} {rel:>8.4f}")
    ok = bool(steps) and worst <= a.max_rel
    print(f"{len(steps)} shared evaluations, largest relative difference {worst:.4f} "
          f"({'within' if ok else 'NOT within'} {a.max_rel})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
