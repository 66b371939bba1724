#!/usr/bin/env bash
# `mxq bench` (issue 20) on the CPU backends: a linear problem, an MoE problem and every layer
# of the sample model; the JSON report's structure, positive finite numbers, the backends timed
# being exactly those `mxq explain` says can run, --backend, progress only on a terminal, and
# clear errors for bad input.
#   tests/scripts/cli_bench_test.sh PATH_TO_MXQ PYTHON
set -euo pipefail
mxq=$(realpath "$1") py=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_cli_bench_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
quick=(--warmup 1 --iters 4 --max-time 0.5 --bw-mib 32)

# The backends `mxq explain` lists as able to run a problem ("ok"), comma-separated, sorted.
runnable() { "$mxq" explain "$@" | awk '$2 == "prio" && $4 == "ok" { print $1 }' | sort | paste -sd, -; }

lin=(--op linear --n 256 --k 512 --m 2 --bias)
moe=(--op moe --n 256 --k 128 --m 3 --experts 8 --topk 2 --layout interleaved --activation swigluoai)
"$mxq" bench "${lin[@]}" "${quick[@]}" --json "$tmp/new/dir/linear.json" >"$tmp/linear.out" 2>"$tmp/linear.err" ||
  { cat "$tmp/linear.out" "$tmp/linear.err"; fail "bench linear"; }
"$mxq" bench "${moe[@]}" "${quick[@]}" --json "$tmp/moe.json" >"$tmp/moe.out" 2>"$tmp/moe.err" ||
  { cat "$tmp/moe.out" "$tmp/moe.err"; fail "bench moe"; }
"$mxq" bench "${lin[@]}" "${quick[@]}" --backend cpu-reference --json "$tmp/one.json" >/dev/null ||
  fail "bench --backend cpu-reference"
"$mxq" bench "${lin[@]}" "${quick[@]}" --skip cpu-reference --json "$tmp/skip.json" >/dev/null ||
  fail "bench --skip cpu-reference"
"$mxq" sample "$tmp/dense" >/dev/null && "$mxq" quantize "$tmp/dense" -o "$tmp/q" >/dev/null
"$mxq" bench "$tmp/q" --tokens 2 "${quick[@]}" --json "$tmp/model.json" >"$tmp/model.out" 2>"$tmp/model.err" ||
  { cat "$tmp/model.out" "$tmp/model.err"; fail "bench model"; }
cat "$tmp/linear.out"

# Not a terminal: no progress line (no carriage return) on stderr.
if grep -q $'\r' "$tmp/linear.err" "$tmp/moe.err" "$tmp/model.err"; then fail "progress output without a terminal"; fi
# On a terminal (script(1) gives it one): the progress line appears on stderr.
if command -v script >/dev/null; then
  script -qec "$mxq bench ${lin[*]} ${quick[*]} >/dev/null" /dev/null >"$tmp/tty.out" 2>&1 || fail "bench under script"
  grep -q $'\r' "$tmp/tty.out" || fail "no progress line on a terminal"
fi

"$py" "$here/check_bench_json.py" "$tmp/new/dir/linear.json" linear "$(runnable "${lin[@]}")" 1
"$py" "$here/check_bench_json.py" "$tmp/moe.json" moe "$(runnable "${moe[@]}")" 1
"$py" "$here/check_bench_json.py" "$tmp/one.json" linear cpu-reference 1
"$py" "$here/check_bench_json.py" "$tmp/skip.json" linear cpu 1
"$py" - "$tmp/skip.json" <<'PY' || fail "--skip: cpu-reference not listed as skipped"
import json, sys
c = json.load(open(sys.argv[1]))["cases"][0]
assert {"backend": "cpu-reference", "reason": "--skip"} in c["skipped"], c["skipped"]
PY
n_layers=$("$mxq" inspect "$tmp/q" --json | "$py" -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))')
"$py" "$here/check_bench_json.py" "$tmp/model.json" any "$(runnable "${lin[@]}")" "$n_layers"

# Bad input: exit 1 and a message naming the problem; nothing written.
expect_error() {  # expect_error WANT_IN_MESSAGE ARGS...
  local want=$1 rc=0
  shift
  "$mxq" bench "$@" >"$tmp/err.out" 2>"$tmp/err.txt" || rc=$?
  [ "$rc" -ne 0 ] || fail "bench $* succeeded"
  grep -q -- "$want" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "bench $*: no '$want' in the message"; }
}
expect_error "unknown backend" "${lin[@]}" --backend no-such-backend
expect_error "--skip nope: unknown backend" "${lin[@]}" --skip nope
expect_error "not a multiple of 32" --n 64 --k 48
expect_error "expected linear or moe" --op conv
expect_error "describes a problem" "$tmp/q" --m 4
expect_error "no such MX layer" "$tmp/q" --layer nope
expect_error "need 1 <= topk <= experts" --op moe --n 64 --k 64 --experts 2 --topk 3
expect_error "iters" "${lin[@]}" --iters 0
touch "$tmp/file"
expect_error "cannot create its directory" "${lin[@]}" "${quick[@]}" --json "$tmp/file/x.json"
[ ! -e "$tmp/file/x.json" ] || fail "a report under a file"
left=$(find "$tmp" -name '*.tmp-*')
[ -z "$left" ] || fail "temp files left: $left"
echo "ok"
