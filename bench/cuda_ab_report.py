#!/usr/bin/env python3
"""Tables of an A/B run of two builds of the cuda-mma kernels (markdown on stdout).

Usage: bench/cuda_ab_report.py DIR

DIR holds gemm-{base,new}-{1,2,...}.json (bench/cuda_gemm_bench.py, the runs of the two builds
alternated in one GPU session) and optionally moe-{base,new}.json (bench/cuda_moe_bench.py).
Per GEMM case: the best of the runs' medians for each build and new / base; then the geometric
mean over all cases and over M <= 16; per MoE case: eager median (and CUDA-graph median).
"""
import glob
import json
import os
import statistics
import sys


def gemm_runs(d, variant):
    runs = []
    for p in sorted(glob.glob(os.path.join(d, f"gemm-{variant}-*.json"))):
        runs.append({(c["format"], c["n"], c["k"], c["m"]): c["us"] for c in json.load(open(p))["cases"]})
    if not runs:
        sys.exit(f"{d}: no gemm-{variant}-*.json")
    return runs


def main(d):
    base, new = gemm_runs(d, "base"), gemm_runs(d, "new")
    print(f"Dense GEMM, median us per run, best of {len(base)} runs per build:\n")
    print("| format | N x K | M | base | new | new / base |\n|---|---|---|---|---|---|")
    ratios, small = [], []
    for key in sorted(base[0]):
        b = min(r[key] for r in base)
        n = min(r[key] for r in new)
        ratios.append(n / b)
        if key[3] <= 16:
            small.append(n / b)
        print(f"| {key[0]} | {key[1]}x{key[2]} | {key[3]} | {b:.1f} | {n:.1f} | {n / b:.3f} |")
    print(f"\nGeometric mean new / base over the {len(ratios)} cases: "
          f"{statistics.geometric_mean(ratios):.3f}; M <= 16: {statistics.geometric_mean(small):.3f}; "
          f"worst {max(ratios):.3f}.")
    mb, mn = os.path.join(d, "moe-base.json"), os.path.join(d, "moe-new.json")
    if os.path.exists(mb) and os.path.exists(mn):
        def load(p):
            return {(c["shape"], c["format"], c.get("routing", ""), c["m"]): c
                    for c in json.load(open(p))["cases"]}
        b, n = load(mb), load(mn)
        print("\nMoE layer, eager median us (CUDA-graph median where measured):\n")
        print("| layer | format | routing | M | base | new | new / base |\n|---|---|---|---|---|---|---|")
        for key in sorted(b, key=lambda k: (k[0], k[1], k[2], k[3])):
            def cell(c):
                return f"{c['us']:.1f}" + (f" ({c['graph_us']:.1f})" if c.get("graph_us") else "")
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {cell(b[key])} | {cell(n[key])} | "
                  f"{n[key]['us'] / b[key]['us']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
