#!/usr/bin/env bash
# `mxq run` on every real-producer fixture (tests/fixtures/producers; issue 15: every checkpoint
# the producers write runs on cpu and on cuda-mma against cpu-reference). Each fixture's layers,
# 3 tokens, on the cpu backend (CI) and, where this machine has a GPU and the build its CUDA
# part, on cuda-mma and cuda-hopper with --keep-going. Every layer a backend runs must match
# cpu-reference (mxq run's norm-wise 2e-2 check, exit code 2 otherwise); cpu must run every
# layer; a GPU backend may refuse a layer only for a reason its contract states (the patterns
# below), and each refusal is printed. Without a GPU the GPU backends are skipped with the reason.
#   tests/scripts/cli_run_fixtures_test.sh PATH_TO_MXQ [LOG]
set -uo pipefail
mxq=$1
log=${2:-/dev/null}
here=$(cd "$(dirname "$0")/../fixtures/producers" && pwd)
fail=0
allowed='runs MXFP4 \(E2M1\) and MXFP8 \(E4M3\) weights|would have to apply the FP8 scale inside the fused gate/up epilogue|is not declared by cuda-hopper'
backends=(cpu)
first=$(ls -d "$here"/*/ | head -1)
gpu=$("$mxq" explain "$first" | awk '/^ +gpu: /{print; exit}')
if [[ $gpu == *"gpu: none"* ]]; then
  echo "[ SKIPPED  ] cuda-mma, cuda-hopper: ${gpu#*gpu: }"
  # --keep-going where the forced backend runs nothing: every layer listed as refused with the
  # reason, exit code 3 (not a pass)
  out=$("$mxq" run "$first" --backend cuda-mma --keep-going 2>&1); rc=$?
  n=$(echo "$out" | grep -c ' refused: .*device: ')
  [[ $rc == 3 && $n -ge 4 && $out == *"no layer ran: cuda-mma refused all"* ]] \
    || { echo "FAIL: --keep-going without a GPU: rc $rc, $n refusals"; echo "$out" | tail -3; fail=1; }
else
  backends+=(cuda-mma cuda-hopper)
fi
: > "$log"
fixtures=0
for dir in "$here"/*/; do
  [[ -f $dir/config.json ]] || continue
  name=$(basename "$dir")
  if ! "$mxq" explain "$dir" > /dev/null 2>&1; then  # refused checkpoints have tests of their own
    echo "[ SKIPPED  ] $name: $("$mxq" explain "$dir" 2>&1 | tail -1)"
    continue
  fi
  fixtures=$((fixtures + 1))
  for b in "${backends[@]}"; do
    out=$("$mxq" run "$dir" --backend "$b" --tokens 3 --iters 1 --keep-going 2>&1)
    rc=$?
    printf '## %s on %s (rc %d)\n%s\n' "$name" "$b" "$rc" "$out" >> "$log"
    if [[ $rc != 0 ]]; then
      echo "FAIL: $name on $b: rc $rc"; echo "$out" | tail -5; fail=1; continue
    fi
    refused=$(echo "$out" | grep ' refused: ' || true)
    if [[ -n $refused && $b == cpu ]]; then
      echo "FAIL: $name: the cpu backend refused layers:"; echo "$refused"; fail=1
    fi
    while IFS= read -r line; do
      [[ -z $line ]] && continue
      if [[ $line =~ $allowed ]]; then
        echo "refused (by contract): $name on $b: ${line%% *}"
      else
        echo "FAIL: $name on $b refused a layer for a reason outside its contract: $line"; fail=1
      fi
    done <<< "$refused"
    ran=$(echo "$out" | grep -cE "^model\.[^ ]+ +(linear|moe) +$b ")
    echo "$name on $b: $ran layer(s) ran and matched cpu-reference"
  done
done
[[ $fixtures -ge 20 ]] || { echo "FAIL: only $fixtures fixtures ran (expected the ~25 of tests/fixtures/producers)"; fail=1; }
[[ $fail == 0 ]] && echo "ok: $fixtures fixtures on ${backends[*]}"
exit $fail
