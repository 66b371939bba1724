#!/usr/bin/env python3
"""The provenance of every benchmark result JSON under bench/results/<device>/ (issue 18,
deliverable 4), checked.

A result (a JSON file, or each entry of its "runs" list where it has one) records the provenance
fields of its kind: PY_GPU for the Python GPU benchmarks (bench/provenance.py), CUDA_QUANT for
mxq_bench_cuda_quant, GBENCH for the Google Benchmark CPU benchmarks (bench/provenance.h),
QUANTIZE_PIPELINE and WHEEL_BUILD for the CPU tools' results that name their "kind". A
result written before those lacks some of them; it passes only with a "provenance_recovered"
object that accounts for each lacking field, either under "fields" ({"value": ..., "source":
"where the value came from"}) or under "missing" ("why it cannot be recovered"). A superseded
result moves to bench/results/archive/<device>/ instead; every file there must be named in a row
of bench/results/archive/README.md, and the current files that row names as superseding it must
exist. OPTIONAL fields (binary_commit of the Python GPU benchmarks, written since the shim
reports its build commit) are not required of older results, but checked where present.

    scripts/check_results.py [--root DIR]   one line per result with the fields it lacks and how
                                            each is covered; exit 1 naming every uncovered one
    scripts/check_results.py --self-test    the checker on a small tree with known violations

Run by ctest (results_provenance, results_provenance_self_test; label "script"). Standard
library only; `git` is used, where available, to check that a recovered commit exists.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# The provenance fields of each kind of result, as its benchmark writes them: field -> (where in
# the result, what it is). The Python GPU benchmarks (bench/provenance.py) record the full set; the
# C++ benchmarks record commit and binary hash themselves (bench/provenance.h), mxq_bench_cuda_quant
# with its device, driver and copy rate (no torch, peers or BF16 peak in that process), Google
# Benchmark's (CPU) in its context next to the host description it writes.
PY_GPU = {
    "commit": ("commit", "the git commit of the tree that ran"),
    "shim_sha256": ("shim_sha256", "sha256 of the binary that ran"),
    "device": ("device", "the device"),
    "driver": ("driver", "the NVIDIA driver version"),
    "torch": ("torch", "the torch version"),
    "peers": ("peers", "the peers' versions"),
    "copy_bandwidth_Bps": ("copy_bandwidth_Bps", "the device copy bandwidth measured in the run"),
    "bf16_peak_flops": ("bf16_peak_flops", "the BF16 peak measured in the run"),
}
CUDA_QUANT = {
    "commit": ("commit", "the git commit of the tree that ran"),
    "binary_sha256": ("binary_sha256", "sha256 of mxq_bench_cuda_quant"),
    "device": ("device", "the device"),
    "driver": ("driver", "the CUDA driver API version"),
    "runtime": ("runtime", "the CUDA runtime version"),
    "copy_gbps": ("copy_gbps", "the device copy rate measured in the run"),
}
GBENCH = {
    "mxq_commit": ("context.mxq_commit", "the git commit of the tree that ran"),
    "mxq_binary_sha256": ("context.mxq_binary_sha256", "sha256 of the benchmark binary"),
    "host_name": ("context.host_name", "the machine (Google Benchmark's context)"),
    "num_cpus": ("context.num_cpus", "its CPU count (Google Benchmark's context)"),
}
# The CPU tools' results name their kind ("kind": ...): bench/quantize_pipeline.py (`mxq
# quantize` of a BF16 file under /usr/bin/time) and scripts/wheel_record.py (a wheel built from
# scratch); both take the machine and build from bench/provenance.py's host_environment.
QUANTIZE_PIPELINE = {
    "commit": ("commit", "the commit of the mxq binary that ran"),
    "binary_sha256": ("binary_sha256", "sha256 of the mxq binary"),
    "cpu_model": ("cpu_model", "the CPU model"),
    "num_cpus": ("num_cpus", "its CPU count"),
    "compiler": ("compiler", "the compiler of the binary's build"),
    "date": ("date", "when it ran"),
    "command": ("command", "the command that wrote the result"),
}
WHEEL_BUILD = {
    "commit": ("commit", "the commit the wheel was built from"),
    "wheel_sha256": ("wheel_sha256", "sha256 of the wheel"),
    "cpu_model": ("cpu_model", "the CPU model"),
    "num_cpus": ("num_cpus", "its CPU count"),
    "tools": ("tools", "the build tools' versions (compiler, CMake, scikit-build-core, ...)"),
    "date": ("date", "when it was built"),
    "command": ("command", "the command that wrote the result"),
}
NAMED_KINDS = {"mxq-quantize-pipeline": QUANTIZE_PIPELINE, "mxq-wheel-build": WHEEL_BUILD}
REQUIRED = PY_GPU  # the self-test's kind
# Fields newer runs of a kind write and older results lack: not required, checked when present.
# binary_commit: the commit the shim that ran was built from, as the shim says it
# (bench/provenance.py binary_commit: a short hash with "-dirty", or why it is not known).
OPTIONAL = {"python-gpu": {"binary_commit": "the commit the shim was built from"}}
BINARY_COMMIT = re.compile(r"[0-9a-f]{7,40}([+-]dirty)?")


def check_optional(unit, kname, where):
    """Problems with the optional fields of a result of kind kname that it has."""
    problems = []
    if "binary_commit" in OPTIONAL.get(kname, {}) and "binary_commit" in unit:
        v = unit["binary_commit"]
        if not isinstance(v, str) or not (BINARY_COMMIT.fullmatch(v) or
                                          v.startswith(("unknown: ", "unavailable: "))):
            problems.append(f"{where}: binary_commit {v!r} is neither a git hash (\"-dirty\" "
                            "allowed) nor \"unknown: ...\" / \"unavailable: ...\" with the reason")
    return problems


def kind(unit):
    """(name, fields) of a result's kind."""
    if unit.get("kind") in NAMED_KINDS:
        return unit["kind"], NAMED_KINDS[unit["kind"]]
    if isinstance(unit.get("context"), dict) and isinstance(unit.get("benchmarks"), list):
        return "google-benchmark", GBENCH
    if "results" in unit and "copy_gbps" in unit:
        return "mxq_bench_cuda_quant", CUDA_QUANT
    return "python-gpu", PY_GPU


def present(unit, path):
    for part in path.split("."):
        if not isinstance(unit, dict) or part not in unit:
            return False
        unit = unit[part]
    return True


RECOVERED = "provenance_recovered"
COMMIT = re.compile(r"[0-9a-f]{7,40}(\+dirty)?")
SHA256 = re.compile(r"[0-9a-f]{64}")
ARCHIVE_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|(.*)\|\s*$")


def expand(pattern):
    """`a/b.{json,md}` -> [a/b.json, a/b.md] (one brace group at most)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [pattern[:m.start()] + alt + pattern[m.end():] for alt in m.group(1).split(",")]


class Git:
    def __init__(self, root):
        self.root = root
        self.ok = shutil.which("git") is not None and subprocess.run(
            ["git", "-C", root, "rev-parse", "--git-dir"], capture_output=True).returncode == 0
        self.cache = {}

    def has_commit(self, rev):
        """True / False, or None where git cannot tell (no git, not a repository)."""
        if not self.ok:
            return None
        if rev not in self.cache:
            self.cache[rev] = subprocess.run(
                ["git", "-C", self.root, "cat-file", "-e", rev + "^{commit}"],
                capture_output=True).returncode == 0
        return self.cache[rev]


def units(data):
    """(label, dict) of each result in a file: the file, or each of its runs."""
    if isinstance(data, dict) and isinstance(data.get("runs"), list) and data["runs"]:
        return [(f"runs[{i}]", r) for i, r in enumerate(data["runs"])]
    return [("", data)]


def check_recovered(rec, lacking, fields_of_kind, git, where):
    """Problems of a provenance_recovered object for the lacking fields."""
    if not isinstance(rec, dict):
        return [f"{where}: {RECOVERED} is not an object"]
    problems = []
    if not (isinstance(rec.get("about"), str) and rec["about"].strip()):
        problems.append(f"{where}: {RECOVERED} has no 'about' (who added it, when, from what)")
    fields = rec.get("fields", {})
    missing = rec.get("missing", {})
    if not isinstance(fields, dict) or not isinstance(missing, dict):
        return problems + [f"{where}: {RECOVERED}.fields / .missing must be objects"]
    for key in sorted(set(fields) | set(missing)):
        if key not in fields_of_kind:
            problems.append(f"{where}: {RECOVERED} names '{key}', not a provenance field of "
                            "this kind of result")
    for key, f in fields.items():
        if key in missing:
            problems.append(f"{where}: '{key}' both recovered and missing")
        if not isinstance(f, dict) or f.get("value") in (None, "") or \
                not (isinstance(f.get("source"), str) and f["source"].strip()):
            problems.append(f"{where}: recovered '{key}' needs a value and a source string")
            continue
        v = f["value"]
        if key in ("commit", "mxq_commit"):
            if not (isinstance(v, str) and COMMIT.fullmatch(v)):
                problems.append(f"{where}: recovered commit {v!r} is not a git hash")
            elif git.has_commit(v.split("+")[0]) is False:
                problems.append(f"{where}: recovered commit {v!r} is not in this repository")
        if key.endswith("sha256") and not (isinstance(v, str) and SHA256.fullmatch(v)):
            problems.append(f"{where}: recovered {key} {v!r} is not a sha256")
    for key, why in missing.items():
        if not (isinstance(why, str) and why.strip()):
            problems.append(f"{where}: missing '{key}' needs the reason it cannot be recovered")
    for key in lacking:
        if key not in fields and key not in missing:
            problems.append(f"{where}: lacks '{key}' ({fields_of_kind[key][1]}) and {RECOVERED} "
                            "neither recovers it nor lists it as missing")
    return problems


def archived_names(results):
    """Paths (relative to bench/results/archive/) named in the archive README's table, and
    problems of its rows (a superseding file that does not exist)."""
    readme = os.path.join(results, "archive", "README.md")
    names, problems = set(), []
    if not os.path.exists(readme):
        return names, problems
    with open(readme) as f:
        for n, line in enumerate(f, 1):
            m = ARCHIVE_ROW.match(line)
            if not m or m.group(1) == "file":
                continue
            names.update(expand(m.group(1)))
            for ref in re.findall(r"`([^`]+)`", m.group(3)):
                for p in expand(ref):
                    if not os.path.exists(os.path.join(results, p)):
                        problems.append(f"archive/README.md:{n}: superseded by `{p}`, which "
                                        "is not under bench/results/")
    return names, problems


def check(root, out=sys.stdout):
    """Print the report; return the list of problems."""
    results = os.path.join(root, "bench", "results")
    git = Git(root)
    problems, counts = [], {"complete": 0, "recovered": 0, "archived": 0}
    if not os.path.isdir(results):
        return [f"no {results}"]
    for device in sorted(os.listdir(results)):
        ddir = os.path.join(results, device)
        if device == "archive" or not os.path.isdir(ddir):
            continue
        for dirpath, dirnames, filenames in os.walk(ddir):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".json"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, results)
                try:
                    with open(path) as f:
                        data = json.load(f)
                except (OSError, ValueError) as e:
                    problems.append(f"{rel}: cannot read: {e}")
                    continue
                for label, unit in units(data):
                    where = rel + (f" {label}" if label else "")
                    if not isinstance(unit, dict):
                        problems.append(f"{where}: not a JSON object")
                        continue
                    kname, fields = kind(unit)
                    opt = check_optional(unit, kname, where)
                    problems += opt
                    lacking = [k for k, (path, _) in fields.items() if not present(unit, path)]
                    if not lacking and not opt:
                        counts["complete"] += 1
                        print(f"ok        {where} ({kname})", file=out)
                        continue
                    if RECOVERED not in unit:
                        problems.append(f"{where}: lacks {', '.join(lacking)}: no {RECOVERED} "
                                        "object and not archived (move a superseded result to "
                                        "bench/results/archive/<device>/ with a row in its "
                                        "README.md)")
                        print(f"FAIL      {where}: lacks {', '.join(lacking)}", file=out)
                        continue
                    p = check_recovered(unit[RECOVERED], lacking, fields, git, where)
                    problems += p
                    rec = unit[RECOVERED] if isinstance(unit[RECOVERED], dict) else {}
                    got = [k for k in lacking if k in rec.get("fields", {})]
                    gone = [k for k in lacking if k in rec.get("missing", {})]
                    counts["recovered"] += 1
                    print(f"{'FAIL' if p else 'recovered'} {where} ({kname}): lacks "
                          f"{', '.join(lacking)}; recovered {', '.join(got) or '-'}; missing "
                          f"{', '.join(gone) or '-'}", file=out)
    names, p = archived_names(results)
    problems += p
    adir = os.path.join(results, "archive")
    for dirpath, _, filenames in os.walk(adir):
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), adir)
            if rel == "README.md":
                continue
            counts["archived"] += 1
            if rel not in names:
                problems.append(f"archive/{rel}: not in a row of bench/results/archive/README.md "
                                "(what it was, what supersedes it)")
    print(f"{counts['complete']} results with every field, {counts['recovered']} with recovered "
          f"provenance, {counts['archived']} archived files", file=out)
    return problems


# ----------------------------------------------------------------------------------- self-test

def self_test():
    full = {k: "x" for k in REQUIRED}
    full["commit"] = "0123abc"
    good_rec = {"about": "test", "fields": {"commit": {"value": "0123abc", "source": "a.md"}},
                "missing": {k: "not recorded" for k in REQUIRED if k != "commit"}}
    row = "| `h1/old.{json,md}` | an old run | `h1/new.json` |\n"
    cases = [  # (name, {path: content}, substrings every one of which a problem must contain)
        ("complete", {"h1/new.json": full}, []),
        ("runs complete", {"h1/new.json": {"runs": [full, full]}}, []),
        ("binary commit", {"h1/new.json": dict(full, binary_commit="0123abc-dirty")}, []),
        ("binary commit unknown", {"h1/new.json": dict(
            full, binary_commit="unknown: the shim was built outside a git checkout")}, []),
        ("bad binary commit", {"h1/new.json": dict(full, binary_commit="")},
         ["h1/new.json: binary_commit '' is neither a git hash"]),
        ("recovered", {"h1/new.json": {"cases": [], RECOVERED: good_rec}}, []),
        ("archived", {"h1/new.json": full, "archive/h1/old.json": {}, "archive/h1/old.md": "",
                      "archive/README.md": row}, []),
        ("google benchmark", {"cpu/g.json": {"benchmarks": [], "context": {
            "mxq_commit": "0123abc", "mxq_binary_sha256": "a" * 64, "host_name": "vm",
            "num_cpus": 2}}}, []),
        ("google benchmark lacks", {"cpu/g.json": {"benchmarks": [], "context": {
            "host_name": "vm", "num_cpus": 2}}},
         ["cpu/g.json: lacks mxq_commit, mxq_binary_sha256"]),
        ("google benchmark, GPU field", {"cpu/g.json": {"benchmarks": [], "context": {
            "host_name": "vm", "num_cpus": 2}, RECOVERED: dict(good_rec, fields={}, missing={
                "mxq_commit": "x", "mxq_binary_sha256": "x", "torch": "x"})}}, ["names 'torch'"]),
        ("cuda quant", {"h1/q.json": {"results": [], "copy_gbps": 1.0, "commit": "0123abc",
                                      "binary_sha256": "a" * 64, "device": "d", "driver": 1,
                                      "runtime": 1}}, []),
        ("cuda quant lacks", {"h1/q.json": {"results": [], "copy_gbps": 1.0, "device": "d",
                                            "driver": 1, "runtime": 1}},
         ["h1/q.json: lacks commit, binary_sha256"]),
        ("quantize pipeline", {"cpu/q.json": {"kind": "mxq-quantize-pipeline", **{
            k: "x" for k in QUANTIZE_PIPELINE}}}, []),
        ("quantize pipeline lacks", {"cpu/q.json": {"kind": "mxq-quantize-pipeline", **{
            k: "x" for k in QUANTIZE_PIPELINE if k not in ("binary_sha256", "compiler")}}},
         ["cpu/q.json: lacks binary_sha256, compiler"]),
        ("wheel build", {"cpu/w.json": {"kind": "mxq-wheel-build", **{
            k: "x" for k in WHEEL_BUILD}}}, []),
        ("wheel build lacks", {"cpu/w.json": {"kind": "mxq-wheel-build", **{
            k: "x" for k in WHEEL_BUILD if k != "tools"}}}, ["cpu/w.json: lacks tools"]),
        ("nested folder", {"h1/ab/x.json": {"device": "d"}}, ["h1/ab/x.json: lacks commit"]),
        ("no block", {"h1/new.json": {"device": "d"}}, ["lacks commit, shim_sha256", "no "
                                                         + RECOVERED]),
        ("one run lacks", {"h1/new.json": {"runs": [full, {k: 1 for k in REQUIRED
                                                            if k != "driver"}]}},
         ["runs[1]: lacks driver"]),
        ("field unaccounted", {"h1/new.json": {RECOVERED: dict(good_rec, missing={})}},
         ["lacks 'shim_sha256'"]),
        ("no source", {"h1/new.json": {RECOVERED: dict(good_rec, fields={
            "commit": {"value": "0123abc"}})}}, ["needs a value and a source"]),
        ("no reason", {"h1/new.json": {RECOVERED: dict(good_rec, missing=dict(
            good_rec["missing"], driver=""))}}, ["missing 'driver' needs the reason"]),
        ("bad commit", {"h1/new.json": {RECOVERED: dict(good_rec, fields={
            "commit": {"value": "wip", "source": "a"}})}}, ["commit 'wip' is not a git hash"]),
        ("bad sha", {"h1/new.json": {RECOVERED: dict(good_rec, fields=dict(
            good_rec["fields"], shim_sha256={"value": "abc", "source": "a"}), missing={
            k: "x" for k in REQUIRED if k not in ("commit", "shim_sha256")})}},
         ["shim_sha256 'abc' is not a sha256"]),
        ("both", {"h1/new.json": {RECOVERED: dict(good_rec, missing=dict(
            good_rec["missing"], commit="x"))}}, ["'commit' both recovered and missing"]),
        ("unknown field", {"h1/new.json": {RECOVERED: dict(good_rec, missing=dict(
            good_rec["missing"], colour="x"))}}, ["names 'colour'"]),
        ("no about", {"h1/new.json": {RECOVERED: {k: v for k, v in good_rec.items()
                                                  if k != "about"}}}, ["no 'about'"]),
        ("unlisted archive", {"archive/h1/old.json": {}}, ["archive/h1/old.json: not in a row"]),
        ("brace half listed", {"archive/h1/old.png": "", "h1/new.json": full,
                               "archive/README.md": row}, ["archive/h1/old.png: not in a row"]),
        ("superseder gone", {"archive/h1/old.json": {}, "archive/README.md": row},
         ["superseded by `h1/new.json`"]),
        ("unreadable", {"h1/new.json": "{"}, ["h1/new.json: cannot read"]),
    ]
    failed = 0
    for name, files, want in cases:
        tmp = tempfile.mkdtemp(prefix="mxq-check-results-")
        try:
            for rel, content in files.items():
                path = os.path.join(tmp, "bench", "results", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(content if isinstance(content, str) else json.dumps(content))
            with open(os.devnull, "w") as null:
                problems = check(tmp, null)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not want and problems:
            print(f"FAIL {name}: unexpected problems {problems}")
            failed += 1
        for w in want:
            if not any(w in p for p in problems):
                print(f"FAIL {name}: no problem containing {w!r} in {problems}")
                failed += 1
    if failed:
        return 1
    print(f"self-test ok: {len(cases)} trees")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   ".."))
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    problems = check(os.path.abspath(a.root))
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"{len(problems)} problem(s); see scripts/check_results.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
