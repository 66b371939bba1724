#!/usr/bin/env bash
# Builds the safetensors libFuzzer target with clang++ (ASan + UBSan) and fuzzes
# SafetensorsFile::parse for $1 seconds (default 60) on a copy of the seed corpus, replaying
# tests/fuzz/regressions/ too. Exits non-zero on any crash, leak, timeout or sanitizer report;
# the crashing input is kept under <build>/artifacts/ (add it to tests/fuzz/regressions/).
#
#   tests/fuzz/run_fuzz.sh [seconds]      env: CXX_FUZZ (default clang++), MXQ_FUZZ_BUILD_DIR
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${MXQ_FUZZ_BUILD_DIR:-$root/build/fuzz}
cxx=${CXX_FUZZ:-clang++}
command -v "$cxx" >/dev/null || { echo "run_fuzz: $cxx not found (scripts/setup.sh installs clang)" >&2; exit 2; }
mkdir -p "$build/obj" "$build/artifacts"

# Two runs at once (ctest and a manual run) must not interleave their builds.
exec 9>"$build/.lock"
command -v flock >/dev/null && flock 9

cflags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -I"$root/include" -I"$root/src")
# Only what SafetensorsFile::parse needs (src/io also holds the format adapters and pipelines).
sources=("$root/src/core/status.cc" "$root/src/io/json_util.cc" "$root/src/io/safetensors.cc"
         "$root/tests/fuzz/safetensors_fuzz.cc")
headers=("$root/include/mxq/status.h" "$root/include/mxq/safetensors.h" "$root/src/io/internal.h")

# Rebuild an object when it is older than its source or any mxq header (or this script).
objs=() pids=()
for src in "${sources[@]}"; do
  obj="$build/obj/$(basename "${src%.cc}").o"
  objs+=("$obj")
  stale=0
  for dep in "$src" "${headers[@]}" "$0"; do [ "$dep" -nt "$obj" ] && stale=1 && break; done
  [ -f "$obj" ] || stale=1
  if [ $stale = 1 ]; then
    echo "[fuzz] compile $(realpath --relative-to="$root" "$src")"
    "$cxx" "${cflags[@]}" -c "$src" -o "$obj" & pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
bin="$build/safetensors_fuzz"
"$cxx" -fsanitize=fuzzer,address,undefined "${objs[@]}" -o "$bin"
exec 9>&-

work=$(mktemp -d "$build/corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$root"/tests/fuzz/corpus/safetensors/* "$work"/
log="$build/last_run.log"
echo "[fuzz] running $bin for ${secs}s on $(ls "$work" | wc -l) seeds (log: $log)"
set +e
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$bin" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict="$root/tests/fuzz/safetensors.dict" -artifact_prefix="$build/artifacts/" \
  -print_final_stats=1 "$work" "$root/tests/fuzz/regressions" >"$log" 2>&1
rc=$?
set -e
grep -E "INITED|DONE|^Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added" "$log" || true
if [ $rc -ne 0 ]; then
  tail -n 60 "$log" >&2
  echo "[fuzz] FAILED (exit $rc); crashing inputs: $(ls "$build"/artifacts/ 2>/dev/null | tr '\n' ' ')" >&2
  echo "[fuzz] fix the reader, then add the input to tests/fuzz/regressions/" >&2
  exit 1
fi
echo "[fuzz] ok: no crash in ${secs}s"
