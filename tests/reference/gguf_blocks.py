#!/usr/bin/env python3
"""GGUF dequantisation fixture: random blocks of every ggml type we read, written with the
`gguf` package (llama.cpp's gguf-py) and dequantised by its numpy reference (`gguf.quants`).

Writes tests/fixtures/gguf_blocks/blocks.gguf (tensor `<type>` of shape [2, 512], plus metadata
of every value type) and expected.safetensors (`<type>`: f32 [2, 512], gguf-py's dequantisation).
Block scale fields (f16 d / dmin) are set to finite values in [-2, 2]; all other bytes random.

Usage: python tests/reference/gguf_blocks.py
"""

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFWriter
from gguf.quants import dequantize
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "gguf_blocks"
ROWS, COLS = 2, 512
# type: (elems per block, bytes per block, byte offsets of f16 scale fields)
TYPES = {
    "Q4_0": (32, 18, [0]), "Q5_0": (32, 22, [0]), "Q8_0": (32, 34, [0]),
    "Q4_K": (256, 144, [0, 2]), "Q5_K": (256, 176, [0, 2]), "Q6_K": (256, 210, [208]),
}


def main():
    rng = np.random.default_rng(7)
    OUT.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(OUT / "blocks.gguf"), "gemma3")
    w.add_uint32("test.u32", 7)
    w.add_int32("test.i32", -5)
    w.add_float32("test.f32", 0.5)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    w.add_array("test.arr", [1, 2, 3])
    expected = {}
    for name, (per, size, scales) in TYPES.items():
        n_blocks = ROWS * COLS // per
        raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
        for off in scales:
            d = rng.uniform(-2, 2, n_blocks).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
        raw = raw.reshape(ROWS, -1)
        qt = getattr(Q, name)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        expected[name] = dequantize(raw, qt).astype(np.float32).reshape(ROWS, COLS)
    for name, arr in {"F32": rng.standard_normal((ROWS, COLS)).astype(np.float32),
                      "F16": rng.standard_normal((ROWS, COLS)).astype(np.float16)}.items():
        w.add_tensor(name, arr)
        expected[name] = arr.astype(np.float32)
    bf = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    bf16 = (bf.view(np.uint32) >> 16).astype(np.uint16)
    w.add_tensor("BF16", bf16, raw_dtype=Q.BF16)
    expected["BF16"] = (bf16.astype(np.uint32) << 16).view(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, str(OUT / "expected.safetensors"))
    print({k: v.shape for k, v in expected.items()})


if __name__ == "__main__":
    main()
