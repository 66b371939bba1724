#!/usr/bin/env python3
"""Benchmark numbers in README.md (and bench/README.md), generated from the result JSON files.

In each document of DOCS, between `<!-- numbers:begin -->` and `<!-- numbers:end -->` every benchmark number is a link
written `[TEXT](PATH "n:ID")`: ID names a claim of CLAIMS below (result file, case selector,
value, format), PATH is the result file it comes from (relative to the document). The script
recomputes TEXT and PATH of each claim from the files; the prose around them stays hand-written.

  scripts/readme_numbers.py            rewrite the documents' numbers from the result files
  scripts/readme_numbers.py --check    exit 1 with a diff when a document differs (a hand edit,
                                       a changed result file, a claim missing or unknown)

--root DIR: the repository root (default: this script's parent). Standard library only.
"""
import argparse
import difflib
import json
import os
import re
import sys

BEGIN, END = "<!-- numbers:begin -->", "<!-- numbers:end -->"
LINK = re.compile(r'\[([^\]]*)\]\(([^\s)]+) "n:([A-Za-z0-9_.-]+)"\)')
JSON_LINK = re.compile(r'\]\(([^\s)]+\.json)[\s)]')

H100 = "bench/results/h100/"
H200 = "bench/results/h200/"
GEMM_8K = {"format": "mxfp4", "n": 8192, "k": 8192}
OSS = {"shape": "gpt-oss-120b", "format": "mxfp4", "routing": "uniform"}


def claim(files, where=None, value="us", fmt="{:.1f} us", run=None, pick=None, scale=1):
    """files: one result file or a list (then `pick` chooses among the matching cases);
    where: field -> value (or list of allowed values) a case must have;
    value: a case field, 'a/b' (field a over field b), a dotted path into nested dicts
    ('mxq_backends.cuda-mma.us'), or '@field' for a field of the file (or of its run);
    run: index into the file's 'runs' list, for files that hold several runs;
    pick: 'min:FIELD' / 'max:FIELD' takes the case with the smallest / largest FIELD over all
    matching cases of all files; scale: the value is multiplied by it before formatting."""
    return {"files": [files] if isinstance(files, str) else list(files), "where": where or {},
            "value": value, "fmt": fmt, "run": run, "pick": pick, "scale": scale}


# README.md's performance claims, in the order they appear.
CLAIMS = {
    # cuda-mma on the H100 (issue 5 / 6)
    "h100-gemm-m1-us": claim(H100 + "gemm.json", dict(GEMM_8K, m=1)),
    "h100-gemm-m1-vs-cublas": claim(H100 + "gemm.json", dict(GEMM_8K, m=1),
                                    "cublas_bf16_us/us", "{:.1f}x"),
    "h100-gemm-m2048-vs-cublas": claim(H100 + "gemm.json", dict(GEMM_8K, m=2048),
                                       "cublas_bf16_us/us", "{:.1f}x"),
    "h100-moe-m1-us": claim(H100 + "moe.json", dict(OSS, m=1)),
    "h100-moe-m1-graph-us": claim(H100 + "moe.json", dict(OSS, m=1), "graph_us"),
    "h100-moe-m1-vs-bf16-graph": claim(H100 + "moe.json", dict(OSS, m=1),
                                       "vs_bf16_graph", "{:.2f}x"),
    "h100-moe-humming-m1-graph-us": claim("bench/results/archive/h100/moe-2da3d70.json",
                                          dict(OSS, m=1), "humming_graph_us", "{:.0f} us"),
    # cuda-hopper dense GEMM on the H200, run a of gemm-hopper.json
    "h200-gemm-commit": claim(H200 + "gemm-hopper.json", run=0, value="@commit", fmt="{}"),
    "h200-gemm-m64-vs-cublas": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=64), run=0,
                                     value="cublas_bf16_us/us", fmt="{:.2f}x"),
    "h200-gemm-m512-vs-cublas": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=512), run=0,
                                      value="cublas_bf16_us/us", fmt="{:.2f}x"),
    "h200-gemm-m8192-vs-cublas": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=8192), run=0,
                                       value="cublas_bf16_us/us", fmt="{:.2f}x"),
    "h200-gemm-m512-vs-humming": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=512), run=0,
                                       value="vs_humming", fmt="{:.2f}x"),
    "h200-gemm-m8192-vs-humming": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=8192), run=0,
                                        value="vs_humming", fmt="{:.2f}x"),
    "h200-gemm-m512-vs-mma": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=512), run=0,
                                   value="mxq_backends.cuda-mma.us/us", fmt="{:.1f}x"),
    "h200-gemm-m8192-vs-mma": claim(H200 + "gemm-hopper.json", dict(GEMM_8K, m=8192), run=0,
                                    value="mxq_backends.cuda-mma.us/us", fmt="{:.1f}x"),
    # the guard A/B's two runs of the new build: the faster of the two per M
    "h200-guard-commit": claim(H200 + "gemm-hopper-guard-ab-new-1-2026-12-04.json",
                               value="@commit", fmt="{}"),
    "h200-guard-m512-us": claim([H200 + "gemm-hopper-guard-ab-new-1-2026-12-04.json",
                                 H200 + "gemm-hopper-guard-ab-new-2-2026-12-04.json"],
                                dict(GEMM_8K, m=512), pick="min:us"),
    "h200-guard-m2048-us": claim([H200 + "gemm-hopper-guard-ab-new-1-2026-12-04.json",
                                  H200 + "gemm-hopper-guard-ab-new-2-2026-12-04.json"],
                                 dict(GEMM_8K, m=2048), pick="min:us"),
    "h200-guard-m512-vs-cublas": claim([H200 + "gemm-hopper-guard-ab-new-1-2026-12-04.json",
                                        H200 + "gemm-hopper-guard-ab-new-2-2026-12-04.json"],
                                       dict(GEMM_8K, m=512), "cublas_bf16_us/us", "{:.2f}x",
                                       pick="min:us"),
    "h200-guard-m2048-vs-cublas": claim([H200 + "gemm-hopper-guard-ab-new-1-2026-12-04.json",
                                         H200 + "gemm-hopper-guard-ab-new-2-2026-12-04.json"],
                                        dict(GEMM_8K, m=2048), "cublas_bf16_us/us", "{:.2f}x",
                                        pick="min:us"),
    # the split-cost A/B: M = 128 before (ff9c617) and after
    "h200-split-m128-old-us": claim(H200 + "gemm-hopper-split-ab-ff9c617-2026-12-04.json",
                                    dict(GEMM_8K, m=128)),
    "h200-split-m128-new-us": claim(H200 + "gemm-hopper-split-ab-new-2026-12-04.json",
                                    dict(GEMM_8K, m=128)),
    # cuda-hopper MoE on the H200 (graphs where the README says so)
    "h200-moe-commit": claim(H200 + "moe-hopper.json", value="@commit", fmt="{}"),
    "h200-moe-m128-graph-us": claim(H200 + "moe-hopper.json", dict(OSS, m=128), "graph_us",
                                    "{:.0f} us"),
    "h200-moe-m128-vs-mma-graph": claim(H200 + "moe-hopper.json", dict(OSS, m=128),
                                        "vs_mma_graph", "{:.2f}x"),
    "h200-moe-m128-vs-bf16-graph": claim(H200 + "moe-hopper.json", dict(OSS, m=128),
                                         "vs_bf16_graph", "{:.1f}x"),
    "h200-moe-m8192-vs-mma": claim(H200 + "moe-hopper.json", dict(OSS, m=8192), "vs_mma",
                                   "{:.2f}x"),
    "h200-moe-m1-vs-mma-graph": claim(H200 + "moe-hopper.json", dict(OSS, m=1), "vs_mma_graph",
                                      "{:.2f}x"),
    # run a of moe-hopper-peers (cuda-hopper, cuda-mma and vLLM's MoE paths), graphs
    "h200-moe-peers-commit": claim(H200 + "moe-hopper-peers-2026-12-04.json", run=0,
                                   value="@commit", fmt="{}"),
    "h200-moe-peers-m128-graph-us": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                          dict(OSS, m=128), "graph_us", "{:.0f} us", run=0),
    "h200-moe-peers-m128-vs-mma-graph": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                              dict(OSS, m=128), "vs_mma_graph", "{:.2f}x", run=0),
    "h200-moe-peers-m128-vs-triton-graph": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                                 dict(OSS, m=128), "vs_vllm_triton_graph",
                                                 "{:.2f}x", run=0),
    "h200-moe-peers-m128-vs-marlin-graph": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                                 dict(OSS, m=128), "vs_vllm_marlin_graph",
                                                 "{:.2f}x", run=0),
    "h200-moe-peers-m1-graph-us": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                        dict(OSS, m=1), "graph_us", run=0),
    "h200-moe-peers-m1-vs-mma-graph": claim(H200 + "moe-hopper-peers-2026-12-04.json",
                                            dict(OSS, m=1), "vs_mma_graph", "{:.2f}x", run=0),
}


# bench/README.md's cuda-mma MoE paragraph (H100, issue 6).
UP_TO_128 = dict(OSS, m=[1, 4, 16, 64, 128])
ARCHIVE_MOE = "bench/results/archive/h100/moe-2da3d70.json"
BENCH_CLAIMS = {
    "h100-moe-m1-us": claim(H100 + "moe.json", dict(OSS, m=1)),
    "h100-moe-m1-graph-us": claim(H100 + "moe.json", dict(OSS, m=1), "graph_us"),
    "h100-moe-m1-floor-us": claim(H100 + "moe.json", dict(OSS, m=1), "floor_us"),
    "h100-moe-m16-us": claim(H100 + "moe.json", dict(OSS, m=16)),
    "h100-moe-m8192-tflops": claim(H100 + "moe.json", dict(OSS, m=8192), "tflops", "{:.0f}"),
    "h100-moe-m8192-pct-peak": claim(H100 + "moe.json", dict(OSS, m=8192), "pct_bf16_peak",
                                     "{:.1f}%"),
    "h100-moe-bf16-peak": claim(H100 + "moe.json", value="@bf16_peak_flops", fmt="{:.0f}",
                                scale=1e-12),
    "h100-moe-vs-bf16-graph-low": claim(H100 + "moe.json", UP_TO_128, "vs_bf16_graph", "{:.1f}",
                                        pick="min:vs_bf16_graph"),
    "h100-moe-vs-bf16-graph-high": claim(H100 + "moe.json", UP_TO_128, "vs_bf16_graph",
                                         "{:.1f}x", pick="max:vs_bf16_graph"),
    "h100-moe-m8192-vs-bf16": claim(H100 + "moe.json", dict(OSS, m=8192), "vs_bf16", "{:.2f}x"),
    "h100-moe-m1-vs-humming-graph": claim(ARCHIVE_MOE, dict(OSS, m=1), "vs_humming_graph",
                                          "{:.1f}x"),
    "h100-moe-m16-vs-humming-graph": claim(ARCHIVE_MOE, dict(OSS, m=16), "vs_humming_graph",
                                           "{:.2f}x"),
    "h100-moe-m512-vs-humming-graph": claim(ARCHIVE_MOE, dict(OSS, m=512), "vs_humming_graph",
                                            "{:.2f}x"),
}

# The documents and their claims tables (paths relative to the repository root).
DOCS = {"README.md": CLAIMS, "bench/README.md": BENCH_CLAIMS}


class ClaimError(Exception):
    pass


def lookup(obj, path, cid, where):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise ClaimError(f"claim {cid}: {where} has no field '{path}'")
        obj = obj[part]
    return obj


def matches(case, where):
    for key, want in where.items():
        allowed = want if isinstance(want, list) else [want]
        if case.get(key) not in allowed:
            return False
    return True


def evaluate(cid, c, root):
    """(text, file) of claim cid: the formatted value and the result file it came from."""
    found = []  # (file, container, case)
    for rel in c["files"]:
        path = os.path.join(root, rel)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ClaimError(f"claim {cid}: cannot read {rel}: {e}")
        if c["run"] is not None:
            runs = data.get("runs") if isinstance(data, dict) else None
            if not isinstance(runs, list) or c["run"] >= len(runs):
                raise ClaimError(f"claim {cid}: {rel} has no run {c['run']}")
            data = runs[c["run"]]
        if c["value"].startswith("@"):
            found.append((rel, data, None))
            continue
        cases = [x for x in data.get("cases", []) if matches(x, c["where"])]
        found += [(rel, data, x) for x in cases]
    if not found:
        raise ClaimError(f"claim {cid}: no case with {c['where']} in {', '.join(c['files'])}")
    if c["pick"]:
        how, key = c["pick"].split(":", 1)
        found.sort(key=lambda t: lookup(t[2], key, cid, t[0]), reverse=how == "max")
    elif len(found) > 1:
        raise ClaimError(f"claim {cid}: {len(found)} cases match {c['where']} in "
                         f"{', '.join(c['files'])}; narrow the selector")
    rel, data, case = found[0]
    if c["value"].startswith("@"):
        value = lookup(data, c["value"][1:], cid, rel)
    elif "/" in c["value"]:
        num, den = c["value"].split("/")
        value = lookup(case, num, cid, rel) / lookup(case, den, cid, rel)
    else:
        value = lookup(case, c["value"], cid, rel)
    if c["scale"] != 1:
        value *= c["scale"]
    return c["fmt"].format(value), rel


def regenerate(text, readme_dir, root, claims):
    """The README text with every claim link recomputed, and the list of problems."""
    problems = []
    b = text.find(BEGIN)
    e = text.find(END, b + 1) if b >= 0 else -1
    if b < 0 or e < b:
        return text, [f"no {BEGIN} ... {END} section"]
    body = text[b:e]
    seen = {}

    def sub(m):
        old_text, old_path, cid = m.groups()
        seen[cid] = seen.get(cid, 0) + 1
        if cid not in claims:
            problems.append(f"claim {cid}: not in the claims table of scripts/readme_numbers.py")
            return m.group(0)
        try:
            new_text, rel = evaluate(cid, claims[cid], root)
        except ClaimError as err:
            problems.append(str(err))
            return m.group(0)
        new_path = os.path.relpath(os.path.join(root, rel), readme_dir)
        if (old_text, old_path) != (new_text, new_path):
            problems.append(f"claim {cid} ({rel}): README has [{old_text}]({old_path}), "
                            f"the file gives [{new_text}]({new_path})")
        return f'[{new_text}]({new_path} "n:{cid}")'

    new_body = LINK.sub(sub, body)
    for cid in claims:
        if seen.get(cid, 0) != 1:
            problems.append(f"claim {cid} ({', '.join(claims[cid]['files'])}): appears "
                            f"{seen.get(cid, 0)} times in the numbers section, not once")
    stripped = LINK.sub("", body)
    for m in JSON_LINK.finditer(stripped):
        problems.append(f"link to {m.group(1)} in the numbers section without a claim: "
                        f"write its number as [TEXT]({m.group(1)} \"n:ID\")")
    return text[:b] + new_body + text[e:], problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a document is not current")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    status = 0
    for name, claims in DOCS.items():
        doc = os.path.join(root, name)
        with open(doc) as f:
            text = f.read()
        new, problems = regenerate(text, os.path.dirname(doc), root, claims)
        for p in problems:
            print(f"{name}: {p}")
        if args.check:
            if new != text:
                sys.stdout.writelines(difflib.unified_diff(
                    text.splitlines(True), new.splitlines(True), name,
                    name + " (from the results)"))
            if problems or new != text:
                print(f"{name}: numbers differ from the result files; "
                      "run scripts/readme_numbers.py to regenerate them")
                status = 1
            else:
                print(f"{name}: {len(claims)} numbers match their result files")
            continue
        if any("README has" not in p for p in problems):
            status = 1
        if new != text:
            tmp = doc + ".tmp"
            with open(tmp, "w") as f:
                f.write(new)
            os.replace(tmp, doc)
            print(f"{name}: rewrote the numbers from the result files")
    return status


if __name__ == "__main__":
    sys.exit(main())
