#!/usr/bin/env bash
# Issue 20, deliverable 2 on the GPU host: the torch tests run from the installed CUDA wheel.
#   tests/python/gpu_wheel_test.sh WHEEL OUTDIR [PYTEST_PATH...]
# 1. a fresh venv that sees the host's packages (torch, transformers, numpy, ml_dtypes, pytest:
#    nothing can be downloaded there), `pip install --no-deps --no-index WHEEL`, timed;
# 2. `python -c "import mxq; print(mxq.__version__, mxq.device())"` from outside the checkout; the
#    version check: mxq.__version__ = CMakeLists.txt's project version, and the wheel's CLI
#    (mxq/_bin/mxq, the `mxq` script in the venv's bin, `python -m mxq`) prints exactly
#    `mxq <that version> (commit <mxq.__commit__>)`; the CUDA check: where
#    torch.cuda.is_available() (or a GPU is listed by nvidia-smi), the wheel must have its CUDA
#    part (mxq.cuda_built, a GPU in mxq.device(), a supported CUDA backend);
# 3. pytest of tests/python/package (numpy suite + test_pkg_torch.py: opcheck, torch.compile,
#    CUDA graphs, CUDA vs cpu-reference), then test_pkg_patch_model.py (transformers models on
#    cpu and cuda), in the venv's interpreter with mxq imported from the venv first (asserted
#    before and after: mxq.__file__ and every mxq.* module inside the venv, never python/ of the
#    checkout; the cwd is a temp dir, PYTHONPATH and the user site are off). PYTEST_PATHs replace
#    the two default steps by one.
# Logs in OUTDIR: env.txt, install.log, import.txt, pytest-<step>.log + .xml, summary.txt (one
# line: wheel size, install seconds, the CLI's version line, CUDA check, pass/fail/error/skip
# counts). Exit 1 if the install, the import or the version check fails, the CUDA part is
# missing where CUDA is available, or any test fails, errors or times out. On a machine without a GPU the CUDA tests skip with their printed reason.
# Environment:
#   PYTHON                      the host interpreter (default python3). When it is itself a
#                               venv (the GPU host's /opt/torch/.venv), --system-site-packages
#                               alone would see the base Python's packages, not its own: its
#                               site-packages are added by a .pth file, after the venv's own.
#   MXQ_GPU_WHEEL_BUDGET        seconds for all pytest steps together (default 250); each step
#                               gets what is left, a step cut off counts as failed.
#   MXQ_GPU_WHEEL_ASSUME_CUDA=1 treat CUDA as available (checks this script's CUDA-part check
#                               on a machine without a GPU: it must then fail).
# Extra environment for pytest passes through (e.g. MXQ_PATCH_DEVICES=cuda).
set -uo pipefail
whl=$(realpath "${1:?usage: tests/python/gpu_wheel_test.sh WHEEL OUTDIR [PYTEST_PATH...]}")
out=${2:?usage: tests/python/gpu_wheel_test.sh WHEEL OUTDIR [PYTEST_PATH...]}
shift 2
cd "$(dirname "$0")/../.."
repo=$PWD
mkdir -p "$out" && out=$(realpath "$out")
py=${PYTHON:-python3}
budget=${MXQ_GPU_WHEEL_BUDGET:-250}
unset PYTHONPATH
export PYTHONNOUSERSITE=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_gpu_wheel_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0 cuda_check=n/a install_s=- counts="no tests run" why="" commit=- cli=-
size=$(stat -c %s "$whl" 2>/dev/null || echo 0)
size_mib=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')
summary() {  # the one line, also on early exits
  local line
  line="gpu_wheel_test: $(basename "$whl") ${size_mib} MiB ($size bytes), commit $commit; install ${install_s} s; cli: $cli; cuda part: $cuda_check; tests: $counts; $([ "$status" = 0 ] && echo PASS || echo "FAIL${why:+: $why}")"
  echo "$line" | tee "$out/summary.txt"
}
die() { echo "FAIL: $*" >&2; why=$*; status=1; summary; exit 1; }
rm -f "$out/steps.txt" "$out"/pytest-*.log "$out"/pytest-*.xml

# --- the machine and the wheel ------------------------------------------------------------------
gpu_listed=0
nvidia-smi -L >/dev/null 2>&1 && gpu_listed=1
{
  echo "# mxq GPU wheel test, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), checkout $(git rev-parse --short HEAD 2>/dev/null || echo -)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -8
  else
    echo "no nvidia-smi (no GPU listed)"
  fi
  "$py" -c "import sys; print('host python', sys.version.split()[0], sys.executable, 'venv' if sys.prefix != sys.base_prefix else '')"
  for m in torch transformers numpy ml_dtypes pytest safetensors; do
    "$py" -c "import $m as m; print('$m', m.__version__, *(['cuda', m.version.cuda, 'available', m.cuda.is_available(), 'gpus', m.cuda.device_count()] if '$m' == 'torch' else []))" 2>/dev/null ||
      echo "$m: not importable"
  done
  echo "wheel $whl: $size bytes ($size_mib MiB), sha256 $(sha256sum "$whl" | cut -d' ' -f1)"
  unzip -l "$whl" 2>/dev/null | grep -E '_core.*\.so' || true
} 2>&1 | tee "$out/env.txt"
[ -f "$whl" ] || die "no wheel $whl"

# --- a fresh venv, the wheel installed (nothing compiles, nothing is downloaded) ----------------
venv=$tmp/venv
(
  "$py" -m venv --system-site-packages "$venv" || exit 1
  vsite=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # The host interpreter's own site-packages when it is a venv (see PYTHON above).
  "$py" -c 'import site, sys
if sys.prefix != sys.base_prefix:
    print("\n".join(site.getsitepackages()))' >"$vsite/_mxq_host_site.pth"
  [ -s "$vsite/_mxq_host_site.pth" ] && echo "host site-packages via $vsite/_mxq_host_site.pth:" &&
    sed 's/^/  /' "$vsite/_mxq_host_site.pth"
  t0=$(date +%s.%N)
  "$venv/bin/python" -m pip install --no-deps --no-index --disable-pip-version-check "$whl" || exit 1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "pip install seconds: %.1f\n", b - a }'
) >"$out/install.log" 2>&1
rc=$?
cat "$out/install.log"
[ "$rc" = 0 ] || die "venv or pip install of $(basename "$whl") failed (install.log)"
install_s=$(sed -n 's/^pip install seconds: //p' "$out/install.log")
vpy=$venv/bin/python

# --- import from the venv, the CUDA part --------------------------------------------------------
(cd "$tmp" && "$vpy" -c "import mxq; print(mxq.__version__, mxq.device())") >"$out/import.txt" 2>&1 ||
  { cat "$out/import.txt"; die "import mxq from the installed wheel"; }
(cd "$tmp" && "$vpy" - "$venv" "$gpu_listed" "${MXQ_GPU_WHEEL_ASSUME_CUDA:-0}" \
   "$(sed -n 's/^project(mxq VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")" <<'PY'
import os, sys
venv, gpu_listed, assume, want = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4]
import mxq
root = os.path.realpath(venv) + os.sep
where = os.path.realpath(mxq.__file__)
print("mxq", mxq.__version__, "commit", mxq.__commit__ or "-", "cuda_built", mxq.cuda_built, "from", where)
assert where.startswith(root), f"mxq imported from {where}, not from the venv {root}"
assert mxq.__version__ == want, f"mxq {mxq.__version__}, CMakeLists.txt says {want}"
# The wheel's CLI (mxq/_bin/mxq), the `mxq` script on the venv's PATH and `python -m mxq`
# print the package's version and commit.
import shutil, subprocess
from mxq import _cli
exe = _cli.path()
assert exe and os.path.realpath(exe).startswith(root), f"the wheel's CLI is {exe}, not in the venv"
script = shutil.which("mxq", path=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""))
assert script and os.path.realpath(script) == os.path.realpath(os.path.join(venv, "bin", "mxq")), \
    f"mxq on the venv's PATH is {script}"
line = f"mxq {mxq.__version__}" + (f" (commit {mxq.__commit__})" if mxq.__commit__ else "")
for cmd in ([exe], [script], [sys.executable, "-m", "mxq"]):
    out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()
    assert out == line, f"{' '.join(cmd)} --version printed {out!r}, the package is {line!r}"
print(f"CLI: {line} (mxq/_bin/mxq = the mxq script on PATH = python -m mxq)")
for b in mxq.backends():
    print(f"  backend {b['name']:12} {b['device']:4} supported={b['supported']} {b['reason']}")
try:
    import torch
    avail, why = torch.cuda.is_available(), f"torch {torch.__version__}"
except Exception as e:  # noqa: BLE001
    avail, why = False, f"torch not importable ({e})"
if gpu_listed and not avail:
    sys.exit(f"CUDA CHECK FAILED: nvidia-smi lists a GPU but torch cannot use it ({why}): "
             "the torch CUDA tests would all skip")
if not (avail or assume):
    print(f"CUDA CHECK: n/a (no CUDA device for torch: {why}; CUDA tests will skip)")
    sys.exit(0)
dev = mxq.device()
cuda_backends = [b["name"] for b in mxq.backends() if b["device"] == "cuda" and b["supported"]]
problems = []
if not mxq.cuda_built:
    problems.append("mxq.cuda_built is False (the wheel has no CUDA part)")
if "gpu: none" in dev:
    problems.append("mxq.device() sees no GPU: " + dev.split("gpu: none", 1)[1].split("\n")[0])
if not cuda_backends:
    problems.append("no supported CUDA backend in mxq.backends()")
if problems:
    sys.exit("CUDA CHECK FAILED (torch.cuda.is_available()" + (" assumed" if assume and not avail else "")
             + "): " + "; ".join(problems))
print("CUDA CHECK: ok, backends " + " ".join(cuda_backends))
PY
) >>"$out/import.txt" 2>&1
rc=$?
cat "$out/import.txt"
commit=$(sed -n 's/^mxq [0-9.]* commit \([^ ]*\) .*/\1/p' "$out/import.txt" | head -1)
here=$(git rev-parse --short HEAD 2>/dev/null || echo "")
[ -n "$here" ] && [ "$commit" != "$here" ] &&
  echo "NOTE: the wheel is of commit $commit, the tests of checkout $here (an error message a later commit changed may fail)"
cuda_check=$(sed -n 's/^CUDA CHECK: \([^ ,(]*\).*/\1/p; s/^CUDA CHECK FAILED.*/MISSING/p' "$out/import.txt" | head -1)
cli=$(sed -n 's/^CLI: \(.*\) (mxq\/_bin\/mxq = .*/\1/p' "$out/import.txt" | head -1)
cli=${cli:-missing}
[ "$rc" = 0 ] || { cuda_check=${cuda_check:-FAILED}; die "import / CLI / CUDA check ($(grep -m1 -E 'FAILED|Error' "$out/import.txt"))"; }

# --- the tests, from the installed wheel --------------------------------------------------------
"$vpy" -c "import pytest" 2>/dev/null || die "pytest is not importable from the host's packages (nothing is downloaded)"
cat >"$tmp/run_pytest.py" <<'PY'
"""pytest in this process after mxq is imported from the venv, which the tests then share.
The body runs only as __main__: processes the tests spawn (torch.multiprocessing, the parallel
module tests) import this file again as __mp_main__, and must not run the suite again."""
import os, sys
root = ""
def check(when):
    bad = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())
           if (n == "mxq" or n.startswith("mxq.")) and getattr(m, "__file__", None)
           and not os.path.realpath(m.__file__).startswith(root)}
    if bad:
        sys.exit(f"mxq modules from outside the venv {when}: {bad}")
def main():
    global root
    venv, junit, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    root = os.path.realpath(venv) + os.sep
    import mxq
    check("before pytest")
    print("mxq", mxq.__version__, "from", mxq.__file__, flush=True)
    import pytest
    rc = pytest.main(["-v", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}", *args])
    check("after pytest")
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED:  # a module skipped as a whole (no torch) is fine
        import xml.etree.ElementTree as ET
        ts = list(ET.parse(junit).getroot().iter("testsuite"))
        n, k = (sum(int(t.get(a, 0)) for t in ts) for a in ("tests", "skipped"))
        if n and n == k:
            print(f"(no test collected, {k} skipped as a whole: not a failure)")
            rc = 0
    sys.exit(int(rc))
if __name__ == "__main__":
    main()
PY
if [ $# -gt 0 ]; then
  steps=(custom)
else
  steps=(package patch_model)
fi
deadline=$((SECONDS + budget))
for step in "${steps[@]}"; do
  case $step in
    package) paths=("$repo/tests/python/package" "--ignore=$repo/tests/python/package/test_pkg_patch_model.py") ;;
    patch_model) paths=("$repo/tests/python/package/test_pkg_patch_model.py") ;;
    custom) paths=("$@") ;;
  esac
  left=$((deadline - SECONDS))
  log=$out/pytest-$step.log xml=$out/pytest-$step.xml
  rm -f "$xml"
  echo "== pytest $step (${left} s left)"
  if [ "$left" -le 5 ]; then
    echo "no time left for $step" | tee "$log"; echo "$step rc=timeout" >>"$out/steps.txt"; status=1; continue
  fi
  (cd "$tmp" && MXQ_REQUIRE_PACKAGE=1 PYTHONUNBUFFERED=1 timeout -k 10 "$left" \
     "$vpy" "$tmp/run_pytest.py" "$venv" "$xml" "${paths[@]}") >"$log" 2>&1
  rc=$?
  grep -vE "^(Loading weights|Writing model shards)" "$log" | tail -n 25
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && { echo "$step: cut off after the budget (MXQ_GPU_WHEEL_BUDGET=$budget)"; rc=timeout; }
  echo "$step rc=$rc" >>"$out/steps.txt"
  [ "$rc" = 0 ] || status=1
done
# Counts from the JUnit reports (a step without one, cut off or crashed, is one failure).
counts=$("$vpy" - "$out" "${steps[@]}" <<'PY'
import sys, xml.etree.ElementTree as ET
out, steps = sys.argv[1], sys.argv[2:]
tot = dict(passed=0, failed=0, errors=0, skipped=0)
parts = []
for s in steps:
    try:
        root = ET.parse(f"{out}/pytest-{s}.xml").getroot()
    except (OSError, ET.ParseError):
        tot["failed"] += 1
        parts.append(f"{s}: no report (cut off or crashed)")
        continue
    c = dict(passed=0, failed=0, errors=0, skipped=0)
    for ts in root.iter("testsuite"):
        n, f, e, k = (int(ts.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
        c["passed"] += n - f - e - k; c["failed"] += f; c["errors"] += e; c["skipped"] += k
    for key in tot:
        tot[key] += c[key]
    parts.append(f"{s} {c['passed']}/{c['failed']}/{c['errors']}/{c['skipped']}")
print(f"{tot['passed']} passed, {tot['failed']} failed, {tot['errors']} errors, "
      f"{tot['skipped']} skipped ({', '.join(parts)}; passed/failed/errors/skipped)")
PY
)
grep -hE "^SKIPPED" "$out"/pytest-*.log 2>/dev/null | sed 's/^/  /' | head -20
[[ $counts == *" 0 failed, 0 errors"* ]] || status=1
[ "$status" = 0 ] || why="not all passed: $(tr '\n' ' ' <"$out/steps.txt")"
summary
exit $status
