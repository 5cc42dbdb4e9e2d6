"""TensorBoard itself reads a run's event files (`[train] tensorboard = true`) and must show what
metrics.jsonl holds: the same tags' steps and values (as f32), with the steps of a resumed run
once (TensorBoard drops the earlier file's steps past the restart marker).

    pip install tensorboard            # 2.21.0 checked
    python tests/reference/tensorboard_check.py RUN_DIR

Exits non-zero on the first difference; prints one line per tag otherwise.
"""

import json
import os
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def expected(run):
    """tag -> {step: value} from metrics.jsonl, as our writer names them."""
    tags = {}
    for line in open(os.path.join(run, "metrics.jsonl")):
        rec = json.loads(line)
        for key, v in rec.items():
            if key == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            tag = "valid/" + key[4:] if key.startswith("val_") else "train/" + key
            tags.setdefault(tag, {})[rec["step"]] = f32(v)
    return tags


def main(run):
    acc = EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    want = expected(run)
    got_tags = sorted(acc.Tags()["scalars"])
    if got_tags != sorted(want):
        sys.exit(f"tags differ: TensorBoard {got_tags}, metrics.jsonl {sorted(want)}")
    files = sorted(f for f in os.listdir(os.path.join(run, "tensorboard")) if "tfevents" in f)
    for tag in got_tags:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        if len(steps) != len(set(steps)):
            sys.exit(f"{tag}: a step appears twice: {steps}")
        got = {e.step: e.value for e in events}
        if got != want[tag]:
            sys.exit(f"{tag}: TensorBoard {got} != metrics.jsonl {want[tag]}")
        print(f"{tag}: {len(got)} steps ({min(got)}..{max(got)}) equal metrics.jsonl")
    print(f"ok: {len(got_tags)} tags from {len(files)} event file(s)")


if __name__ == "__main__":
    main(sys.argv[1])
