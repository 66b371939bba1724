#!/usr/bin/env bash
# The built wheel (issue 20) in a fresh venv: pip install takes seconds (nothing compiles),
# `import mxq; mxq.device()` works from site-packages, the version is the CMake project's, the
# wheel's CLI (`mxq` on the venv's PATH, `python -m mxq`) prints that version and the package's
# commit, and the numpy suite of tests/python/package passes against the installed package
# (its CLI cross-checks with the wheel's CLI).
#   tests/python/wheel_install_test.sh WHEEL [PYTHON]
# MXQ_WHEEL_OFFLINE=1 (a host without PyPI, e.g. the GPU host): the venv sees the system's
# site-packages (numpy, ml_dtypes, pytest, torch) and the wheel is installed with --no-deps;
# then the torch tests of tests/python/package run too, from the installed wheel.
set -euo pipefail
whl=$(realpath "$1") py=${2:-python3}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_wheel_test_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

offline=${MXQ_WHEEL_OFFLINE:-0}
if [ "$offline" = 1 ]; then
  "$py" -m venv --system-site-packages "$tmp/venv"
  pip_args=(--no-index --no-deps)
else
  "$py" -m venv "$tmp/venv"
  pip_args=()
fi
vpy=$tmp/venv/bin/python
start=$SECONDS
"$vpy" -m pip install -q "${pip_args[@]}" "$whl" || fail "pip install $(basename "$whl")"
secs=$((SECONDS - start))
echo "pip install $(basename "$whl") (with numpy, ml_dtypes): ${secs} s"
# Seconds, not minutes: a wheel that compiled anything at install time would take minutes.
[ "$secs" -lt 120 ] || fail "pip install took ${secs} s"

want=$(sed -n 's/^project(mxq VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
(cd "$tmp" && "$vpy" - "$tmp/venv" "$want" <<'PY'
import sys
import mxq
venv, want = sys.argv[1], sys.argv[2]
assert mxq.__file__.startswith(venv), f"mxq imported from {mxq.__file__}, not the venv"
assert mxq.__version__ == want, (mxq.__version__, want)
print("mxq", mxq.__version__, "commit", mxq.__commit__ or "-", "cuda_built", mxq.cuda_built)
print(mxq.device())
import numpy as np
x = np.array([[0.5, 1.0, -6.0, 3.0] * 8], dtype=np.float32)
assert np.array_equal(mxq.dequantize(mxq.quantize(x, "mxfp4")), x), "round trip"
# The CLI of the same build: mxq/_bin/mxq, the `mxq` script on the venv's PATH and
# `python -m mxq`, each printing the package's version (= CMakeLists.txt's) and commit.
import os, shutil, subprocess
from mxq import _cli
exe = _cli.path()
assert exe and exe.startswith(venv), f"the wheel's CLI is {exe}, not in the venv"
script = shutil.which("mxq", path=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
assert script == os.path.join(venv, "bin", "mxq"), f"mxq on the venv's PATH is {script}"
line = f"mxq {mxq.__version__}" + (f" (commit {mxq.__commit__})" if mxq.__commit__ else "")
for cmd in ([exe], [script], [sys.executable, "-m", "mxq"]):
    out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()
    assert out == line, f"{' '.join(cmd)} --version printed {out!r}, the package is {line!r}"
print("cli", line, "(mxq/_bin/mxq, the mxq script on PATH, python -m mxq)")
PY
) || fail "import mxq and its CLI from the installed wheel"

if [ "$offline" != 1 ]; then "$vpy" -m pip install -q pytest || fail "pip install pytest"; fi
MXQ_REQUIRE_PACKAGE=1 "$vpy" -m pytest -q -rs -p no:cacheprovider tests/python/package 2>&1 | tail -${MXQ_WHEEL_TEST_TAIL:-3}
[ "${PIPESTATUS[0]}" = 0 ] || fail "tests/python/package against the installed wheel"
echo "ok"
