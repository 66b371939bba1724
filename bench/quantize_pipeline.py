#!/usr/bin/env python3
"""`mxq quantize` of a dense BF16 safetensors file, timed with /usr/bin/time -v, written as a
result JSON with its provenance (docs/quantize-benchmark.md; issue 18).

    python3 bench/quantize_pipeline.py --mxq build/release/mxq \\
        --out bench/results/<machine>/quantize-pipeline-<date>.json [--gib 1.0] [--runs 3] \\
        [--scheme mxfp4] [--input /tmp/big.safetensors] [--workdir /tmp]

Makes the input with bench/make_dense_model.py (32 x [4096, 4096] BF16 for 1 GiB) unless it
exists, then runs `mxq quantize INPUT -o OUT --scheme S` `--runs` times with a cold page cache
(`sync; echo 3 > /proc/sys/vm/drop_caches`, needs root; without it the cold runs are left out
and the JSON says why) and `--runs` times warm (after one untimed warm-up), alternating. Each run
records wall, user, sys, peak RSS and major page faults from /usr/bin/time -v, mxq's own summary
line, the output's size and the load average before it. The JSON's provenance: the commit and
sha256 of the mxq binary that ran, the machine (CPU model, count, memory, kernel), the compiler
and build type of the binary's CMake build (the CMakeCache.txt next to it), the date and the
exact commands. scripts/check_results.py checks these fields ("kind": "mxq-quantize-pipeline").
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import provenance  # noqa: E402

TIME_FIELDS = {  # /usr/bin/time -v line -> (key, parse)
    "User time (seconds)": ("user_s", float),
    "System time (seconds)": ("sys_s", float),
    "Percent of CPU this job got": ("cpu_percent", lambda v: int(v.rstrip("%"))),
    "Maximum resident set size (kbytes)": ("max_rss_kb", int),
    "Major (requiring I/O) page faults": ("major_faults", int),
    "Minor (reclaiming a frame) page faults": ("minor_faults", int),
    "Exit status": ("exit_status", int),
}


def wall_seconds(v):
    """'0:02.30' or '1:02:03' -> seconds."""
    s = 0.0
    for part in v.split(":"):
        s = s * 60 + float(part)
    return s


def parse_time(text):
    out = {}
    for line in text.splitlines():
        key, _, val = line.strip().partition(": ")
        if key.startswith("Elapsed (wall clock) time"):
            out["wall_s"] = wall_seconds(val.strip())
        elif key in TIME_FIELDS:
            name, conv = TIME_FIELDS[key]
            out[name] = conv(val.strip())
    return out


def tree_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def drop_caches():
    """None when the page cache was dropped, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as ex:
        return f"cannot drop the page cache: {ex}"


def one_run(mxq, inp, out, scheme, mode, workdir):
    shutil.rmtree(out, ignore_errors=True)
    if mode == "cold":
        why = drop_caches()
        if why:
            return None, why
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    tfile = os.path.join(workdir, "mxq-quantize-time.txt")
    cmd = ["/usr/bin/time", "-v", "-o", tfile, mxq, "quantize", inp, "-o", out, "--scheme", scheme]
    p = subprocess.run(cmd, capture_output=True, text=True)
    with open(tfile) as f:
        tv = f.read()
    os.unlink(tfile)
    if p.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    summary = [ln for ln in p.stdout.splitlines() if ln.startswith("quantize ->")]
    rec = {"mode": mode, "loadavg_before": load, **parse_time(tv),
           "output_bytes": tree_bytes(out), "mxq_summary": summary[-1] if summary else p.stdout}
    m = re.search(r"in ([0-9.]+) s", rec["mxq_summary"])
    if m:
        rec["mxq_reported_s"] = float(m.group(1))
    return rec, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mxq", required=True, help="the mxq CLI to time")
    ap.add_argument("--out", required=True, help="result JSON to write")
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3, help="cold runs and warm runs (each)")
    ap.add_argument("--scheme", default="mxfp4")
    ap.add_argument("--input", default=None, help="default WORKDIR/mxq-dense-<gib>gib.safetensors")
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--keep-input", action="store_true", help="leave a generated input in place")
    a = ap.parse_args()
    mxq = os.path.abspath(a.mxq)
    inp = a.input or os.path.join(a.workdir, f"mxq-dense-{a.gib:g}gib.safetensors")
    out = os.path.join(a.workdir, "mxq-quantize-pipeline-out")
    make = [sys.executable, os.path.join(HERE, "make_dense_model.py"), inp, "--gib", f"{a.gib:g}"]
    made = not os.path.exists(inp)
    if made:
        subprocess.run(make, check=True)
    version = subprocess.run([mxq, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    m = re.search(r"\(commit ([^)]+)\)", version)
    commit = os.environ.get("MXQ_COMMIT") or (m.group(1) if m else "unknown: mxq --version "
                                                                  "names no commit")
    started = datetime.datetime.now(datetime.timezone.utc)
    runs, cold_why = [], None
    one_run(mxq, inp, out, a.scheme, "warm-up", a.workdir)  # untimed: warms the page cache
    for _ in range(a.runs):
        for mode in ("cold", "warm"):
            if mode == "cold" and cold_why:
                continue
            rec, why = one_run(mxq, inp, out, a.scheme, mode, a.workdir)
            if why:
                cold_why = why
                continue
            runs.append(rec)
            print(f"{mode}: {rec['wall_s']:.2f} s wall, {rec['user_s']:.2f} + {rec['sys_s']:.2f} s, "
                  f"{rec['max_rss_kb'] / 1000:.1f} MB peak RSS", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    summary = {}
    for mode in ("cold", "warm"):
        rs = [r for r in runs if r["mode"] == mode]
        if rs:
            summary[mode] = {k: {"median": statistics.median(r[k] for r in rs),
                                 "min": min(r[k] for r in rs), "max": max(r[k] for r in rs)}
                             for k in ("wall_s", "user_s", "sys_s", "max_rss_kb")}
            summary[mode]["runs"] = len(rs)
    build_dir = os.path.dirname(mxq)
    result = {
        "kind": "mxq-quantize-pipeline",
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "binary": mxq,
        "binary_sha256": provenance.sha256(mxq),
        "mxq_version": version,
        **provenance.host_environment(build_dir),
        "command": shlex.join([sys.executable, *sys.argv]),
        "input_command": shlex.join(make) + ("" if made else "  (not run: the input existed)"),
        "run_command": shlex.join([mxq, "quantize", inp, "-o", out, "--scheme", a.scheme]) +
                       "  (under /usr/bin/time -v; cold: sync; echo 3 > /proc/sys/vm/drop_caches)",
        "input": {"path": inp, "bytes": os.path.getsize(inp), "gib": a.gib},
        "scheme": a.scheme,
        "cold_runs": "measured" if not cold_why else f"left out: {cold_why}",
        "summary": summary,
        # Not "runs": scripts/check_results.py reads a "runs" list as several results.
        "timings": runs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    if made and not a.keep_input:
        os.unlink(inp)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
