#!/usr/bin/env python3
"""Writes a dense BF16 safetensors file of a given size for the quantize pipeline benchmark.

  python3 bench/make_dense_model.py OUT.safetensors [--gib 1.0]

Tensors are Linear-shaped [4096, 4096] "model.layers.N.mlp.*.weight" with random normal
values (std 0.02), so every one is eligible for quantization. Only numpy is needed.
"""
import argparse
import json
import struct

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    n, k = 4096, 4096
    per = n * k * 2
    count = max(1, int(args.gib * (1 << 30)) // per)
    names = [f"model.layers.{i // 3}.mlp.{['gate_proj', 'up_proj', 'down_proj'][i % 3]}.weight"
             for i in range(count)]
    header = {}
    for i, name in enumerate(names):
        header[name] = {"dtype": "BF16", "shape": [n, k], "data_offsets": [i * per, (i + 1) * per]}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    rng = np.random.default_rng(0)
    with open(args.out, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _ in names:
            x = (rng.standard_normal((n, k), dtype=np.float32) * 0.02).view(np.uint32)
            f.write(((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16).tobytes())  # RNE
    print(f"wrote {args.out}: {count} tensors, {count * per / (1 << 30):.2f} GiB")


if __name__ == "__main__":
    main()
