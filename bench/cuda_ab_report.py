#!/usr/bin/env python3
"""Tables of an A/B run of two builds of the cuda-mma kernels (markdown on stdout).

Usage: bench/cuda_ab_report.py DIR

DIR holds gemm-{base,new}-{1,2,...}.json (bench/cuda_gemm_bench.py) and / or
moe-{base,new}.json or moe-{base,new}-{1,2,...}.json (bench/cuda_moe_bench.py): the runs of the
two builds, alternated in one GPU session. Per case: the best of the runs' medians for each
build and new / base (GEMM: then the geometric mean over all cases and over M <= 16; MoE: eager
median, and the CUDA-graph median where measured).
"""
import glob
import json
import os
import statistics
import sys


def runs(d, kind, variant, key):
    out = []
    for p in sorted(glob.glob(os.path.join(d, f"{kind}-{variant}*.json"))):
        out.append({key(c): c for c in json.load(open(p))["cases"]})
    return out


def best(rs, k, field):
    vals = [r[k][field] for r in rs if r[k].get(field)]
    return min(vals) if vals else None


def main(d):
    gkey = lambda c: (c["format"], c["n"], c["k"], c["m"])
    base, new = runs(d, "gemm", "base", gkey), runs(d, "gemm", "new", gkey)
    if base and new:
        print(f"Dense GEMM, median us per run, best of {len(base)} runs per build:\n")
        print("| format | N x K | M | base | new | new / base |\n|---|---|---|---|---|---|")
        ratios, small = [], []
        for key in sorted(base[0]):
            b, n = best(base, key, "us"), best(new, key, "us")
            ratios.append(n / b)
            if key[3] <= 16:
                small.append(n / b)
            print(f"| {key[0]} | {key[1]}x{key[2]} | {key[3]} | {b:.1f} | {n:.1f} | {n / b:.3f} |")
        print(f"\nGeometric mean new / base over the {len(ratios)} cases: "
              f"{statistics.geometric_mean(ratios):.3f}; M <= 16: "
              f"{statistics.geometric_mean(small):.3f}; worst {max(ratios):.3f}.")
    mkey = lambda c: (c["shape"], c["format"], c.get("routing", ""), c["m"])
    mb, mn = runs(d, "moe", "base", mkey), runs(d, "moe", "new", mkey)
    if mb and mn:
        print(f"\nMoE layer, eager median us (CUDA-graph median where measured), best of {len(mb)} "
              "run(s) per build:\n")
        print("| layer | format | routing | M | base | new | new / base |\n|---|---|---|---|---|---|---|")
        for key in sorted(mb[0]):
            def cell(rs):
                g = best(rs, key, "graph_us")
                return f"{best(rs, key, 'us'):.1f}" + (f" ({g:.1f})" if g else "")
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {cell(mb)} | {cell(mn)} | "
                  f"{best(mn, key, 'us') / best(mb, key, 'us'):.3f} |")
    if not (base and new) and not (mb and mn):
        sys.exit(f"{d}: no base/new result pairs")


if __name__ == "__main__":
    main(sys.argv[1])
