#!/usr/bin/env bash
# The installed CMake package (issue 20): `cmake --install` of an existing build into a temp
# prefix (nothing is rebuilt), then a project outside the tree (tests/install/consumer) finds it
# with find_package(mxq CONFIG REQUIRED), links mxq::mxq / mxq::mxq_shared / mxq::mxq_static
# and runs; a version the package does not satisfy is a configure error.
#   tests/install/install_test.sh BUILD_DIR CMAKE CXX_COMPILER GENERATOR WITH_CUDA
set -euo pipefail
build=$1 cmake=$2 cxx=$3 gen=$4 with_cuda=$5
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_install_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prefix=$tmp/prefix

"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
for f in include/mxq/backend.h include/mxq/select.h include/mxq/version.h lib/libmxq.a \
         lib/libmxq.so lib/cmake/mxq/mxqConfig.cmake lib/cmake/mxq/mxqConfigVersion.cmake \
         lib/cmake/mxq/mxqTargets.cmake bin/mxq; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
ls "$prefix"/lib/libmxq.so.* >/dev/null 2>&1 || fail "no versioned libmxq.so.X.Y"
# Private headers stay private; the Python module is not part of a plain install.
[ -z "$(find "$prefix/include" -name '*.h' ! -path "$prefix/include/mxq/*")" ] || fail "headers outside include/mxq"
[ ! -e "$prefix/mxq" ] || fail "the Python module was installed by a plain cmake --install"
# (grep reads captured output: `cmd | grep -q` fails under pipefail when grep exits first.)
grep -q '^mxq ' <<<"$("$prefix/bin/mxq" --version)" || fail "installed CLI: --version"
if [ "$with_cuda" = ON ]; then
  grep -q 'set(mxq_WITH_CUDA ON)' "$prefix/lib/cmake/mxq/mxqConfig.cmake" || fail "CUDA build, package says no CUDA"
  grep -q make_cuda_backends <<<"$(nm -DC --defined-only "$prefix/lib/libmxq.so")" || fail "no CUDA backends in libmxq.so"
else
  grep -q 'set(mxq_WITH_CUDA OFF)' "$prefix/lib/cmake/mxq/mxqConfig.cmake" || fail "CPU build, package says CUDA"
fi

cfg=("$cmake" -S "$here/consumer" -B "$tmp/consumer" -G "$gen" -DCMAKE_BUILD_TYPE=Release
     -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix")
"${cfg[@]}" >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "consumer configure"; }
"$cmake" --build "$tmp/consumer" -j 2 >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "consumer build"; }
for exe in app app_shared app_static; do
  out=$("$tmp/consumer/$exe") || { echo "$out"; fail "$exe exited $?"; }
  grep -q '^consumer ok' <<<"$out" || { echo "$out"; fail "$exe: no 'consumer ok'"; }
done
echo "$out"
grep -q "$prefix/lib/libmxq.so" <<<"$(ldd "$tmp/consumer/app_shared")" || fail "app_shared does not load the installed libmxq.so"
grep -q "$prefix/lib/libmxq.so" <<<"$(ldd "$tmp/consumer/app")" || fail "mxq::mxq is not the shared library"
if grep -q libmxq <<<"$(ldd "$tmp/consumer/app_static")"; then fail "app_static loads libmxq.so"; fi

# find_package(mxq 99.0): the version file refuses it.
if "${cfg[@]}" -DMXQ_WANT_VERSION=99.0 >"$tmp/configure99.log" 2>&1; then
  fail "find_package(mxq 99.0) succeeded"
fi
grep -q 'requested version "99.0"' "$tmp/configure99.log" || { cat "$tmp/configure99.log"; fail "no version mismatch message"; }
echo "ok: installed package builds and runs a consumer (CUDA part $with_cuda)"
