"""Checks an `mxq bench --json` report (tests/scripts/cli_bench_test.sh).

usage: check_bench_json.py REPORT OP BACKENDS CASES
  OP        linear | moe | any: the op of every case
  BACKENDS  comma-separated, sorted: exactly the backends each case must list as timed
  CASES     the number of cases (1 for a problem, the layer count for a model)
"""
import json
import math
import sys

path, op, want_backends, n_cases = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path) as f:
    r = json.load(f)


def fail(msg):
    sys.exit(f"FAIL {path}: {msg}")


def positive(x, what):
    if not (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0):
        fail(f"{what} = {x!r}: not a positive finite number")


for key in ("mxq_version", "commit", "device", "bandwidth", "settings", "cases"):
    if key not in r:
        fail(f"no '{key}'")
if not r["bandwidth"]:
    fail("no bandwidth measurement")
for b in r["bandwidth"]:
    positive(b["gb_per_s"], f"bandwidth {b['where']}")
    positive(b["bytes"], f"bandwidth {b['where']} bytes")
if len(r["cases"]) != n_cases:
    fail(f"{len(r['cases'])} cases, want {n_cases}")
want = want_backends.split(",")
for c in r["cases"]:
    name = c["name"]
    if op != "any" and c["op"] != op:
        fail(f"{name}: op {c['op']}, want {op}")
    if "error" in c:
        fail(f"{name}: {c['error']}")
    for key in ("bytes", "flops", "m", "n", "k"):
        positive(c[key], f"{name}.{key}")
    if not isinstance(c["bytes_exact"], bool):
        fail(f"{name}: bytes_exact not a bool")
    got = sorted(b["backend"] for b in c["backends"])
    if got != want:
        fail(f"{name}: timed {got}, want the backends that can run it: {want}")
    if c["fastest"] not in got:
        fail(f"{name}: fastest {c['fastest']!r} not among {got}")
    if len(want) > 1 and c["oracle"]["backend"] not in got:
        fail(f"{name}: the oracle's choice {c['oracle']['backend']!r} was not timed")
    for b in c["backends"]:
        what = f"{name}/{b['backend']}"
        if "error" in b:
            fail(f"{what}: {b['error']}")
        if b["where"] != "host" and not b["backend"].startswith("cuda"):
            fail(f"{what}: a CPU backend not on the host")
        for key in ("median_us", "min_us", "max_us", "p25_us", "p75_us", "gb_per_s",
                    "pct_of_bandwidth", "tflop_per_s"):
            positive(b[key], f"{what}.{key}")
        if not (b["min_us"] <= b["p25_us"] <= b["median_us"] <= b["p75_us"] <= b["max_us"]):
            fail(f"{what}: min <= p25 <= median <= p75 <= max does not hold")
        if not (isinstance(b["samples"], int) and 1 <= b["samples"] <= r["settings"]["iters"]):
            fail(f"{what}: samples {b['samples']!r}")
        if not math.isfinite(b["spread_pct"]) or b["spread_pct"] < 0:
            fail(f"{what}: spread_pct {b['spread_pct']!r}")
        # GB/s is bytes / median: the report must agree with itself.
        if abs(b["gb_per_s"] - c["bytes"] / (b["median_us"] * 1e-6) / 1e9) > 1e-6 * b["gb_per_s"]:
            fail(f"{what}: gb_per_s disagrees with bytes / median")
print(f"ok {path}: {len(r['cases'])} case(s), backends {want}")
