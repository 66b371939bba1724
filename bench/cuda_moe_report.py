#!/usr/bin/env python3
"""Markdown tables and a plot from bench/cuda_moe_bench.py's JSON.

Usage: bench/cuda_moe_report.py bench/results/h100/moe.json  (the targets table and the full
table to stdout; moe.png next to the JSON when matplotlib is importable)

Plot: one panel per shape and routing, time vs M for mxq MXFP4 / MXFP8 (eager calls) and the
BF16 baseline (its CUDA-graph replays where timed: eager, it is host-bound at small M),
with each format's floor: max(bytes of the distinct experts hit / copy bandwidth,
FLOPs / BF16 tensor peak).
"""
import json
import os
import sys

SHAPE_ORDER = ["gpt-oss-120b", "deepseek-v3", "qwen3-30b-a3b"]


def bf16_peak(data):
    """The BF16 peak the bench recorded: measured in its process (bf16_peak_source says how);
    files written before 2026-12-03 carry the H100 SXM datasheet's dense BF16 peak, 989e12, with
    no source field. No peak in the file is an error, not a guess."""
    if "bf16_peak_flops" not in data:
        raise SystemExit("this JSON has no bf16_peak_flops: re-run bench/cuda_moe_bench.py")
    return data["bf16_peak_flops"]


def find(cases, **kw):
    for c in cases:
        if all(c.get(k) == v for k, v in kw.items()) and "us" in c:
            return c
    return None


def targets(data):
    """The issue's targets for gpt-oss-120b MXFP4 (uniform routing)."""
    cases, peak = data["cases"], bf16_peak(data)
    rows = []
    c = find(cases, shape="gpt-oss-120b", format="mxfp4", routing="uniform", m=1)
    if c:
        g = (f" (CUDA graph replay: {c['graph_us']:.1f} us, {c['graph_us'] / c['floor_us']:.2f}x)"
             if "graph_us" in c else "")
        rows.append(("M = 1 within 35 us (floor about 17.6 us; goal 1.5x the floor)",
                     f"{c['us']:.1f} us; floor {c['floor_us']:.1f} us ({c['experts_hit']} experts), "
                     f"{c['us'] / c['floor_us']:.2f}x the floor{g}",
                     "met" if c["us"] <= 35 else f"missed by {c['us'] - 35:.1f} us "
                     f"({c['us'] / 35:.2f}x)"))
    c = find(cases, shape="gpt-oss-120b", format="mxfp4", routing="uniform", m=16)
    if c:
        g = f" (graph replay: {c['graph_us']:.1f} us)" if "graph_us" in c else ""
        rows.append(("M = 16 within 400 us",
                     f"{c['us']:.1f} us; floor {c['floor_us']:.1f} us ({c['experts_hit']} experts), "
                     f"{c['pct_floor']:.0f}% of it{g}",
                     "met" if c["us"] <= 400 else f"missed by {c['us'] - 400:.0f} us"))
    c = find(cases, shape="gpt-oss-120b", format="mxfp4", routing="uniform", m=8192)
    if c:
        pct = 100 * c["tflops"] * 1e12 / peak
        need = c["m"] * 2 * c["k"] * 3 * c["h"] * c["i"] / (0.4 * peak) * 1e6
        rows.append((f"M = 8192 at >= 40% of BF16 tensor peak ({peak / 1e12:.0f} TFLOP/s)",
                     f"{c['us']:.0f} us = {c['tflops']:.0f} TFLOP/s = {pct:.1f}% of peak "
                     f"(40% needs <= {need:.0f} us)",
                     "met" if pct >= 40 else f"missed: {pct:.1f}% vs 40% ({40 / pct:.1f}x short)"))
    return rows


def main(path):
    with open(path) as f:
        data = json.load(f)
    bw = data["copy_bandwidth_Bps"]
    cases = [c for c in data["cases"] if "us" in c]
    print("## Against the issue's targets (gpt-oss-120b layer, MXFP4 x BF16, uniform routing)")
    print()
    print("| target (H100) | measured | met? |")
    print("|---|---|---|")
    for r in targets(data):
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    print()
    print(f"Device: {data['device']} ({data['sms']} SMs), torch {data['torch']}; device-to-device "
          f"copy {bw / 1e12:.2f} TB/s (read + write), the floors' bandwidth. BF16 baseline: "
          f"{data['bf16_baseline']}. humming-kernels: {data['humming']}.")
    layers = data.get("humming_layers", [])
    if layers:
        print()
        print("humming layers (gate/up and down grouped GEMMs; first call = JIT compile, not "
              "timed): " + "; ".join(
                  f"{h['shape']} {h['format']}: " + (
                      h["error"] if "error" in h else
                      f"{h['gate_up_compile_s']:.1f} s + {h['down_compile_s']:.1f} s" +
                      (f" (padded to {h['gate_up_pad']} / {h['down_pad']})"
                       if max(h.get("gate_up_pad", 1), h.get("down_pad", 1)) > 1 else ""))
                  for h in layers) + ".")
    print()
    print("## Every case")
    print()
    print("`floor` = bytes of the distinct experts hit (gate/up + down codes and scales) / copy "
          "bandwidth; `TFLOP/s` = 2 M topk 3 H I / t; `vs BF16` = BF16 baseline time / mxq time "
          "(> 1: mxq faster), eager calls; `graph` columns: the same call captured in a CUDA graph "
          "and replayed (launch cost out), up to M = 512; `max pairs` = (token, slot) pairs of the busiest expert; `rel err` "
          "= mxq vs the float32 reference on the dequantized weights; `humming` columns: the same "
          "torch layer as the BF16 baseline with humming's grouped GEMMs on the MX experts, "
          "`vs humming` = humming time / mxq time, `hk err` = its error against the same "
          "reference.")
    print()
    print("| shape | format | routing | M | experts hit | max pairs | mxq us | floor us | "
          "% floor | TFLOP/s | BF16 us | BF16 TFLOP/s | vs BF16 | mxq graph us | "
          "BF16 graph us | vs BF16 (graphs) | humming us | vs humming | humming graph us | "
          "vs humming (graphs) | rel err | hk err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    key = lambda c: (SHAPE_ORDER.index(c["shape"]) if c["shape"] in SHAPE_ORDER else 9,  # noqa: E731
                     c["format"], c["routing"] != "uniform", c["m"])
    f = lambda c, k, fmt, suf="": format(c[k], fmt) + suf if k in c else ""  # noqa: E731
    for c in sorted(cases, key=key):
        print(f"| {c['shape']} | {c['format']} | {c['routing']} | {c['m']} | {c['experts_hit']} | "
              f"{c['max_pairs_per_expert']} | {c['us']:.1f} | {c['floor_us']:.1f} | "
              f"{c['pct_floor']:.0f}% | {c['tflops']:.1f} | {f(c, 'bf16_us', '.1f')} | "
              f"{f(c, 'bf16_tflops', '.1f')} | {f(c, 'vs_bf16', '.2f', 'x')} | "
              f"{f(c, 'graph_us', '.1f')} | {f(c, 'bf16_graph_us', '.1f')} | "
              f"{f(c, 'vs_bf16_graph', '.2f', 'x')} | {f(c, 'humming_us', '.1f')} | "
              f"{f(c, 'vs_humming', '.2f', 'x')} | {f(c, 'humming_graph_us', '.1f')} | "
              f"{f(c, 'vs_humming_graph', '.2f', 'x')} | {f(c, 'rel_err', '.1e')} | "
              f"{f(c, 'humming_rel_err', '.1e')}{' FAIL' if c.get('humming_check') == 'FAIL' else ''}"
              f"{c.get('humming_error', '')} |")
    errs = [c for c in data["cases"] if "error" in c or c.get("check") == "FAIL" or "bf16_error" in c
            or "graph_error" in c or "bf16_graph_error" in c or c.get("graph_same_output") is False
            or "humming_graph_error" in c]
    if errs:
        print()
        print("Errors / failed checks:")
        for c in errs:
            print(f"- {c.get('shape')} {c.get('format')} {c.get('routing')} M={c.get('m')}: "
                  f"{c.get('error') or c.get('bf16_error') or c.get('graph_error') or c.get('bf16_graph_error') or c.get('humming_graph_error') or 'rel err ' + str(c.get('rel_err')) + ', graph output equal: ' + str(c.get('graph_same_output'))}")
    plot(data, path)


def plot(data, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not importable: no plot)", file=sys.stderr)
        return
    bw, peak = data["copy_bandwidth_Bps"], bf16_peak(data)
    cases = [c for c in data["cases"] if "us" in c]
    shapes = [s for s in SHAPE_ORDER if any(c["shape"] == s for c in cases)]
    routings = ["uniform", "skewed"]
    fig, axes = plt.subplots(len(routings), len(shapes), figsize=(5.2 * len(shapes), 8.5),
                             squeeze=False)
    for col, shape in enumerate(shapes):
        for row, routing in enumerate(routings):
            ax = axes[row][col]
            sel = [c for c in cases if c["shape"] == shape and c["routing"] == routing]
            for fmt, color in (("mxfp4", "C0"), ("mxfp8", "C1")):
                cs = sorted((c for c in sel if c["format"] == fmt), key=lambda c: c["m"])
                if not cs:
                    continue
                ms = [c["m"] for c in cs]
                ax.plot(ms, [c["us"] for c in cs], "o-", color=color, label=f"mxq {fmt}")
                floor = [max(c["weight_bytes_hit"] / bw,
                             c["m"] * 2 * c["k"] * 3 * c["h"] * c["i"] / peak) * 1e6 for c in cs]
                ax.plot(ms, floor, ":", color=color, label=f"{fmt} floor")
            bs = {}  # the BF16 baseline: graph replays where timed (eager small M is host-bound)
            for c in sel:
                if c.get("bf16_graph_us") or c.get("bf16_us"):
                    bs[c["m"]] = c.get("bf16_graph_us") or c["bf16_us"]
            for fmt, color in (("mxfp4", "C0"), ("mxfp8", "C1")):
                hs = {c["m"]: c.get("humming_graph_us") or c["humming_us"] for c in sel
                      if c["format"] == fmt and c.get("humming_us")}
                if hs:
                    ms = sorted(hs)
                    ax.plot(ms, [hs[m] for m in ms], "x--", color=color,
                            label=f"humming {fmt} (torch layer; graph replay to M=512)")
            if bs:
                ms = sorted(bs)
                ax.plot(ms, [bs[m] for m in ms], "s--", color="gray",
                        label="BF16 baseline (torch; graph replay to M=512)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{shape}, {routing} routing", fontsize=10)
            ax.set_xlabel("M (tokens)")
            ax.set_ylabel("us")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"cuda-mma fused MoE on {data['device']}: time vs M against the floor "
                 f"(weight bytes of the experts hit / {bw / 1e12:.2f} TB/s, or FLOPs / "
                 f"{peak / 1e12:.0f} TFLOP/s)", fontsize=10)
    fig.tight_layout()
    out = os.path.splitext(path)[0] + ".png"
    fig.savefig(out, dpi=80)
    print(f"\n(plot: {out})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
