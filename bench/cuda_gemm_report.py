#!/usr/bin/env python3
"""Markdown table and roofline-style plot from bench/cuda_gemm_bench.py's JSON.

Usage: bench/cuda_gemm_report.py bench/results/h100/gemm.json  (writes gemm.md's table to stdout
and gemm.png next to the JSON when matplotlib is importable)

Plot: per N x K and format, time vs M for mxq, cuBLAS BF16, cuBLASLt FP8 rowwise and
humming-kernels (where measured), with the two
floors of the MX kernel: weight bytes / measured copy bandwidth (the decode floor) and
2 M N K / the cuBLAS BF16 peak rate seen in the same run (the compute floor).
"""
import json
import os
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    bw = data["copy_bandwidth_Bps"]
    cases = data["cases"]
    print(f"Device: {data['device']} ({data['sms']} SMs), torch {data['torch']}; device-to-device "
          f"copy {bw / 1e12:.2f} TB/s (read + write); humming-kernels: {data['humming']}.")
    layers = data.get("humming_layers", [])
    if layers:
        print()
        print("humming layers (first call = JIT compile of every M interval of its heuristics, "
              "not timed): " + "; ".join(
                  f"{h['format']} {h['n']}x{h['k']}: " +
                  (h["error"] if "error" in h else
                   f"{h['compile_s']:.1f} s" + (f", N and K padded to {h['pad']}"
                                                if h.get("pad", 1) > 1 else ""))
                  for h in layers) + ".")
    print()
    print("`vs X` = X's time / mxq's time (> 1: mxq faster). `humming err` = humming's relative "
          "error against the same float32 reference as mxq's `rel err`.")
    print()
    print("| format | N x K | M | mxq us | weight TB/s | % copy BW | TFLOP/s | cuBLAS BF16 us | "
          "mxq speedup vs BF16 | cuBLASLt FP8 rowwise us | vs FP8 | humming us | vs humming | "
          "rel err | humming err | launch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in cases:
        b16, f8, us = c.get("cublas_bf16_us"), c.get("cublaslt_fp8_rowwise_us"), c["us"]
        hu = c.get("humming_us")
        herr = (f"{c['humming_rel_err']:.1e}" + (" FAIL" if c.get("humming_check") == "FAIL"
                                                 else "")) if "humming_rel_err" in c else \
            c.get("humming_error", "")
        print(f"| {c['format']} | {c['n']}x{c['k']} | {c['m']} | {c['us']:.1f} | "
              f"{c['weight_TBps']:.2f} | {c['pct_copy_bw']:.0f}% | {c['tflops']:.1f} | "
              f"{'' if b16 is None else f'{b16:.1f}'} | "
              f"{'' if b16 is None else f'{b16 / us:.2f}x'} | "
              f"{'n/a' if f8 is None else f'{f8:.1f}'} | "
              f"{'' if f8 is None else f'{f8 / us:.2f}x'} | "
              f"{'' if hu is None else f'{hu:.1f}'} | "
              f"{'' if hu is None else f'{hu / us:.2f}x'} | "
              f"{c.get('rel_err', float('nan')):.1e} | {herr} | {c.get('config', '')} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not importable: no plot)", file=sys.stderr)
        return
    groups = {}
    for c in cases:
        groups.setdefault((c["n"], c["k"]), {}).setdefault(c["format"], []).append(c)
    peak = max((2 * c["m"] * c["n"] * c["k"] / (c["cublas_bf16_us"] * 1e-6)
                for c in cases if c.get("cublas_bf16_us")), default=None)
    fig, axes = plt.subplots(2, (len(groups) + 1) // 2, figsize=(5 * ((len(groups) + 1) // 2), 9),
                             squeeze=False)
    for ax, ((n, k), fmts) in zip(axes.flat, sorted(groups.items())):
        for fmt, cs in sorted(fmts.items()):
            cs = sorted(cs, key=lambda c: c["m"])
            ms = [c["m"] for c in cs]
            line, = ax.plot(ms, [c["us"] for c in cs], "o-", label=f"mxq {fmt}")
            pairs = [(c["m"], c["humming_us"]) for c in cs if c.get("humming_us")]
            if pairs:
                ax.plot(*zip(*pairs), "x--", color=line.get_color(), label=f"humming {fmt}")
            bytes_w = n * k * (0.5 if fmt == "mxfp4" else 1.0) + n * k / 32
            floor = [max(bytes_w / bw, (2 * m * n * k / peak) if peak else 0) * 1e6 for m in ms]
            ax.plot(ms, floor, ":", label=f"{fmt} floor (bytes / copy BW, BF16 peak)")
            if fmt == "mxfp4":
                pairs = [(c["m"], c["cublas_bf16_us"]) for c in cs if c.get("cublas_bf16_us")]
                if pairs:
                    ax.plot(*zip(*pairs), "s--", color="gray", label="cuBLAS BF16")
                pairs = [(c["m"], c["cublaslt_fp8_rowwise_us"]) for c in cs
                         if c.get("cublaslt_fp8_rowwise_us")]
                if pairs:
                    ax.plot(*zip(*pairs), "^--", color="silver", label="cuBLASLt FP8 rowwise")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"N x K = {n} x {k}")
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("us")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(f"cuda-mma GEMM on {data['device']}: time vs M against the floors")
    fig.tight_layout()
    out = os.path.splitext(path)[0] + ".png"
    fig.savefig(out, dpi=90)
    print(f"\n(plot: {out})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
