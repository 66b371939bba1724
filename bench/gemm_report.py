#!/usr/bin/env python3
"""Markdown tables from bench/cuda_gemm_bench.py JSON files (one or more runs of one build).

Usage: python3 bench/gemm_report.py run1.json [run2.json ...] > report.md
Per format and N x K: mxq's time, % of the copy bandwidth, TFLOP/s, and every peer measured in
the same process with the ratio peer time / mxq time (> 1: mxq faster), then the config that ran.
"""
import json
import sys


def ratio(case, key):
    v = case.get(key)
    return ("", "") if v is None else (f"{v:.1f}", f"{v / case['us']:.2f}x")


def main(paths):
    runs = [json.load(open(p)) for p in paths]
    head = runs[0]
    print(f"Device {head['device']} ({head['sms']} SMs), copy bandwidth "
          f"{head['copy_bandwidth_Bps'] / 1e12:.2f} TB/s, torch {head['torch']}, "
          f"{head['humming']}, {head.get('marlin', 'Marlin not run')}, L2 flush by "
          f"{head.get('flush', 'write')}; commit {head.get('commit')}, shim sha256 "
          f"{head.get('shim_sha256')}.")
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
