#!/usr/bin/env python3
"""Markdown tables and a roofline-style plot from bench/cuda_gemm_bench.py's JSON.

Usage: bench/cuda_gemm_report.py run.json [run2.json ...]  (one build's runs: the tables to stdout,
per format and N x K: mxq's time, % of the copy bandwidth, TFLOP/s and every peer measured in the
same process with the ratio peer / mxq (> 1: mxq faster) and the config that ran; the plot of the
first run next to its JSON as .png when matplotlib is importable)

Plot: per N x K and format, time vs M for mxq, cuBLAS BF16, cuBLASLt FP8 rowwise and
humming-kernels (where measured), with the two
floors of the MX kernel: weight bytes / measured copy bandwidth (the decode floor) and
2 M N K / the cuBLAS BF16 peak measured in the run (bf16_peak_flops; in older files the best
cuBLAS BF16 rate among the cases; the compute floor).
"""
import json
import os
import sys


def ratio(case, key):
    v = case.get(key)
    return ("", "") if v is None else (f"{v:.1f}", f"{v / case['us']:.2f}x")


def field(run, key):
    """A provenance field as the run wrote it, else as recovered later (issue 18: the result's
    `provenance_recovered` block, marked so), else None."""
    if run.get(key) is not None:
        return run[key]
    rec = run.get("provenance_recovered", {}).get("fields", {}).get(key, {})
    return f"{rec['value']} (recovered)" if "value" in rec else None


def tables(paths):
    runs = [json.load(open(p)) for p in paths]
    head = runs[0]
    print(f"Device {head['device']} ({head['sms']} SMs), copy bandwidth "
          f"{head['copy_bandwidth_Bps'] / 1e12:.2f} TB/s, torch {head['torch']}, "
          f"{head['humming']}, {head.get('marlin', 'Marlin not run')}, L2 flush by "
          f"{head.get('flush', 'write')}; commit {field(head, 'commit')}, shim sha256 "
          f"{field(head, 'shim_sha256')}" +
          (f"; driver {head['driver']}" if "driver" in head else "") +
          (f"; BF16 peak {head['bf16_peak_flops'] / 1e12:.0f} TFLOP/s measured in the run"
           if head.get("bf16_peak_flops") else "") + ".")
    for r in runs:
        print(f"- `{' '.join(r['argv'])}`")
    cases = [c for r in runs for c in r["cases"]]
    groups = {}
    for c in cases:
        groups.setdefault((c["format"], c["n"], c["k"]), []).append(c)
    for (fmt, n, k), cs in groups.items():
        print(f"\n### {fmt} N x K = {n} x {k} (us; ratio = peer / mxq)\n")
        others = [b for b in cs[0]["mxq_backends"] if b != cs[0]["backend"]]
        print("| M | " + cs[0]["backend"] + " | % copy BW | TFLOP/s | cuBLAS BF16 | ratio | "
              "cuBLASLt FP8 | ratio | humming | ratio | Marlin | ratio | " +
              " | ".join(f"{b} | ratio" for b in others) + " | config |")
        print("|---" * (12 + 2 * len(others) + 1) + "|")
        for c in sorted(cs, key=lambda c: c["m"]):
            row = [str(c["m"]), f"{c['us']:.1f}", f"{c['pct_copy_bw']:.0f}%", f"{c['tflops']:.0f}"]
            for key in ("cublas_bf16_us", "cublaslt_fp8_rowwise_us", "humming_us", "marlin_us"):
                row += ratio(c, key)
            for b in others:
                v = c["mxq_backends"][b]["us"]
                row += [f"{v:.1f}", f"{v / c['us']:.2f}x"]
            cfg = c["config"].replace("wgmma ", "").replace(" (weights as A, ", " (")
            row.append(cfg)
            print("| " + " | ".join(row) + " |")



def main(paths):
    """Tables for every run given (one build), then the plot of the first run."""
    tables(paths)
    path = paths[0]
    with open(path) as f:
        data = json.load(f)
    bw = data["copy_bandwidth_Bps"]
    cases = [c for p in paths for c in json.load(open(p))["cases"]]
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
    # The BF16 peak measured in the run (bf16_peak_flops); files written before it was recorded:
    # the best cuBLAS BF16 rate among the cases of the same run.
    peak = data.get("bf16_peak_flops") or max(
        (2 * c["m"] * c["n"] * c["k"] / (c["cublas_bf16_us"] * 1e-6)
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
    main(sys.argv[1:])
