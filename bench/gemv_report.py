#!/usr/bin/env python3
"""Markdown table from a mxq_bench_gemv JSON file (Google Benchmark, with repetitions).

Usage: bench/gemv_report.py bench/results/cpu-2core/gemv.json

Per benchmark: median and best of the repetitions' weight-streaming rate (GB/s = 1e9 B/s), that
rate as % of the machine's read bandwidth measured in the same run (bandwidth/read_sum with all
threads, median), time per call, and for the mxq rows the speedup over OpenBLAS FP32 of the same
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
        # "bandwidth/read_sum/threads:2/2/real_time" -> "bandwidth/read_sum/threads:2"
        name = re.sub(r"(threads:\d+)/\d+$", r"\1", b["run_name"].replace("/real_time", ""))
        runs.setdefault(name, []).append(b)

    def med(name, key):
        return statistics.median(r[key] for r in runs[name])

    bw_name = next(n for n in runs if re.match(r"bandwidth/read_sum/threads:(?!1$)", n))
    bw = med(bw_name, "bytes_per_second")
    print(f"Measured read bandwidth ({bw_name}, median): {bw / 1e9:.2f} GB/s; "
          f"1 thread: {med('bandwidth/read_sum/threads:1', 'bytes_per_second') / 1e9:.2f} GB/s; "
          f"memcpy (read + write): {med('bandwidth/memcpy', 'bytes_per_second') / 1e9:.2f} GB/s.")
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
