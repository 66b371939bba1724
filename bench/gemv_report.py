#!/usr/bin/env python3
"""Markdown table from a mxq_bench_gemv JSON file (Google Benchmark, with repetitions).

Usage: bench/gemv_report.py bench/results/cpu-2core/gemv.json

Per benchmark: median and best of the repetitions' weight-streaming rate (GB/s = 1e9 B/s), that
rate as % of the machine's read bandwidth measured in the same run (the best bandwidth/read
median: all threads, 8 streams each, read at the start of the run and again at its end
(".../again"), the higher of the two), time per call, and for the mxq rows the speedup over OpenBLAS FP32 of the same
M/N/K (OpenBLAS median time / mxq median time: both compute the same y; OpenBLAS streams 4 B per
weight, MXFP4 0.53 B, MXFP8 1.03 B).
"""
import json
import re
import statistics
import sys


def main(path):
    data = json.load(open(path))
    runs = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].replace("/real_time", "")
        runs.setdefault(name, []).append(b)

    def med(name, key):
        return statistics.median(r[key] for r in runs[name])

    reads = {n: med(n, "bytes_per_second") for n in runs if n.startswith("bandwidth/read/")}
    bw_name = max(reads, key=reads.get)  # the best read rate: the machine's bandwidth
    bw = reads[bw_name]
    print(f"Measured read bandwidth: {bw / 1e9:.2f} GB/s ({bw_name}, median); " +
          "; ".join(f"{n.split('/', 1)[1]}: {v / 1e9:.2f}" for n, v in sorted(reads.items())) +
          f"; memcpy (read + write): {med('bandwidth/memcpy', 'bytes_per_second') / 1e9:.2f} GB/s.")
    sgemv = {n: med(n, "bytes_per_second") for n in runs if n.startswith("openblas/sgemv/")}
    if sgemv:  # a second witness: OpenBLAS's FP32 GEMV is a pure weight stream too
        print("OpenBLAS FP32 sgemv weight streaming rate (median): " +
              "; ".join(f"{n.split('/')[3]}x{n.split('/')[4]}: {v / 1e9:.2f} GB/s "
                        f"({100 * v / bw:.0f}% of the read bandwidth)"
                        for n, v in sorted(sgemv.items())) + ".")
    print()
    print("| benchmark | time/call (median) | GB/s median | GB/s best | % of read bandwidth "
          "(median) | Gelem/s (median) | vs OpenBLAS FP32 (time ratio) |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        if name.startswith("bandwidth/"):
            continue
        gbs = [r["bytes_per_second"] / 1e9 for r in rs]
        t_us = statistics.median(r["real_time"] for r in rs) / 1e3  # ns -> us
        elems = statistics.median(r["elems_per_second"] for r in rs) / 1e9
        vs = ""
        m = re.match(r"gemv/[^/]+/(M:\d+/N:\d+/K:\d+)/dram/threads:all", name)
        if m:
            peer = [n for n in runs if n.startswith("openblas/") and m.group(1) in n]
            if peer:
                vs = f"{med(peer[0], 'real_time') / med(name, 'real_time'):.2f}x"
        print(f"| {name} | {t_us:.0f} us | {statistics.median(gbs):.2f} | {max(gbs):.2f} | "
              f"{100 * statistics.median(gbs) * 1e9 / bw:.0f}% | {elems:.2f} | {vs} |")


if __name__ == "__main__":
    main(sys.argv[1])
