#!/usr/bin/env bash
# End-to-end test of the README's first command (issue 13): scripts/run.sh on a fresh output
# directory whose parents do not exist, with no model (the embedded sample), with a model
# directory and with a single safetensors file. Uses the mxq already built (MXQ_SKIP_SETUP=1),
# so it never builds. Checks each report's last line and that no temp directory is left.
#   tests/scripts/run_sh_test.sh PATH_TO_MXQ
set -euo pipefail
mxq=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_run_sh_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
want="ok: every layer matches cpu-reference within 2e-2 (norm-wise relative)"
fail() { echo "FAIL: $*" >&2; exit 1; }

run() {  # run LOG [MODEL]: the main job into $tmp/fresh/out (absent before the first run)
  local log=$1; shift
  MXQ_SKIP_SETUP=1 MXQ_BIN="$mxq" MXQ_OUT_DIR="$tmp/fresh/out" "$root/scripts/run.sh" "$@" \
    >"$log" 2>&1 || { cat "$log"; fail "scripts/run.sh $* exited with $?"; }
  local last
  last=$(tail -n 1 "$log")
  [ "$last" = "$want" ] || { cat "$log"; fail "run.sh $*: last line is '$last', want '$want'"; }
}

[ ! -e "$tmp/fresh" ] || fail "setup"
run "$tmp/sample.log"
[ -f "$tmp/fresh/out/sample-bf16/config.json" ] || fail "no sample written"
[ -f "$tmp/fresh/out/sample-mxfp4/config.json" ] || fail "no quantized sample written"
grep -q '^== mxq sample ' "$tmp/sample.log" || fail "the report does not show the sample step"

# A model directory (outside the output dir, with a trailing slash) and a safetensors file.
cp -r "$tmp/fresh/out/sample-bf16" "$tmp/mydir"
run "$tmp/dir.log" "$tmp/mydir/"
[ -f "$tmp/fresh/out/mydir-mx/config.json" ] || fail "model directory: no output mydir-mx"
cp "$tmp/mydir/model-00001-of-00002.safetensors" "$tmp/one.safetensors"
run "$tmp/file.log" "$tmp/one.safetensors" --scheme mxfp8
[ -d "$tmp/fresh/out/one.safetensors-mx" ] || fail "safetensors file: no output one.safetensors-mx"
grep -q -- '--scheme mxfp8' "$tmp/file.log" || fail "quantize options not passed through"

# A missing model is a clear error, not a crash further down.
if MXQ_SKIP_SETUP=1 MXQ_BIN="$mxq" MXQ_OUT_DIR="$tmp/fresh/out" "$root/scripts/run.sh" \
     "$tmp/nope" >"$tmp/nope.log" 2>&1; then
  fail "run.sh with a missing model succeeded"
fi
grep -q "model '$tmp/nope' does not exist" "$tmp/nope.log" || { cat "$tmp/nope.log"; fail "no clear error"; }

leftover=$(find "$tmp/fresh" -name '*.tmp-*' -o -name '*.old-*')
[ -z "$leftover" ] || fail "temp directories left: $leftover"
echo "run.sh end to end: sample, model directory, safetensors file: ok"
