#!/usr/bin/env bash
# Builds a libFuzzer target with clang++ (ASan + UBSan) and fuzzes it for $1 seconds (default
# 60) on a copy of its seed corpus. Targets ($2, default safetensors):
#   safetensors  SafetensorsFile::parse (corpus/safetensors/, replays tests/fuzz/regressions/)
#   model        config.json / quantization_config parsing and MoE expert-set assembly:
#                read_model + model_layers + the layers' weight views (corpus/model/)
# Exits non-zero on any crash, leak, timeout or sanitizer report; the crashing input is kept
# under <build>/artifacts/ (add it to tests/fuzz/regressions/ for safetensors).
#
#   tests/fuzz/run_fuzz.sh [seconds] [target]   env: CXX_FUZZ (default clang++), MXQ_FUZZ_BUILD_DIR
set -euo pipefail
secs=${1:-60}
target=${2:-safetensors}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${MXQ_FUZZ_BUILD_DIR:-$root/build/fuzz}
cxx=${CXX_FUZZ:-clang++}
command -v "$cxx" >/dev/null || { echo "run_fuzz: $cxx not found (scripts/setup.sh installs clang)" >&2; exit 2; }
mkdir -p "$build/obj/$target" "$build/artifacts"

# Two runs at once (ctest and a manual run) must not interleave their builds.
exec 9>"$build/.lock"
command -v flock >/dev/null && flock 9

cflags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -I"$root/include" -I"$root/src")
case "$target" in
  safetensors)
    # Only what SafetensorsFile::parse needs (src/io also holds the format adapters and pipelines).
    sources=("$root/src/core/status.cc" "$root/src/io/json_util.cc" "$root/src/io/safetensors.cc"
             "$root/src/io/map_guard.cc" "$root/tests/fuzz/safetensors_fuzz.cc")
    headers=("$root/include/mxq/status.h" "$root/include/mxq/safetensors.h" "$root/src/io/internal.h")
    seeds=("$root"/tests/fuzz/corpus/safetensors/*)
    opts=(-max_len=4096 -dict="$root/tests/fuzz/safetensors.dict")
    replay=("$root/tests/fuzz/regressions")
    ;;
  model)
    # The targets mxq_core, mxq_io (reader), mxq_formats, mxq_backend_api and mxq_layers.
    sources=("$root"/src/core/*.cc "$root/src/io/json_util.cc" "$root/src/io/safetensors.cc"
             "$root/src/io/map_guard.cc" "$root/src/io/checkpoint.cc" "$root/src/io/model.cc" "$root"/src/io/formats/*.cc
             "$root/src/contract/problem.cc" "$root/src/contract/backend.cc"
             "$root/src/contract/weight_checks.cc" "$root/src/select/layers.cc"
             "$root/tests/fuzz/model_fuzz.cc")  # not device.cc: no device probe is needed
    headers=("$root"/include/mxq/*.h "$root"/src/io/*.h "$root"/src/io/formats/*.h
             "$root"/src/contract/*.h "$root"/src/core/*.h)
    seeds=("$root"/tests/fuzz/corpus/model/*)
    opts=(-max_len=8192)
    replay=()
    ;;
  *) echo "run_fuzz: unknown target '$target' (safetensors, model)" >&2; exit 2 ;;
esac

# Rebuild an object when it is older than its source or any mxq header (or this script).
objs=() pids=()
for src in "${sources[@]}"; do
  obj="$build/obj/$target/$(basename "${src%.cc}").o"
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
bin="$build/${target}_fuzz"
"$cxx" -fsanitize=fuzzer,address,undefined "${objs[@]}" -o "$bin"
exec 9>&-

work=$(mktemp -d "$build/corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "${seeds[@]}" "$work"/
log="$build/last_run_$target.log"
echo "[fuzz] running $bin for ${secs}s on $(ls "$work" | wc -l) seeds (log: $log)"
set +e
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$build/artifacts/${target}-" -print_final_stats=1 "${opts[@]}" \
  "$work" "${replay[@]}" >"$log" 2>&1
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
