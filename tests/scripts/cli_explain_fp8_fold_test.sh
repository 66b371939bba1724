#!/usr/bin/env bash
# `mxq explain MODEL --act fp8-*` (issue 17, deliverable 2): under an FP8 activation key every
# layer gets a line counting its weight rows that fold into exact E4M3 operands
# (src/contract/fp8_fold.h) and those that need per-block promotion; none without an FP8 key.
#   tests/scripts/cli_explain_fp8_fold_test.sh PATH_TO_MXQ
set -euo pipefail
mxq=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$mxq" sample "$tmp/bf16" >/dev/null
"$mxq" quantize "$tmp/bf16" -o "$tmp/q4" >/dev/null
"$mxq" quantize "$tmp/bf16" -o "$tmp/q8" --scheme mxfp8 >/dev/null

# One fold line right after each layer line, its row total the layer's rows: N for a linear
# layer, E x (2I + H) for the MoE block (gate/up [E, 2I, H] + down [E, H, I]).
check_rows() {  # check_rows FILE
  awk '
    /^model\./ { if (pending) { print "no fold line after " name; bad = 1 }
                 name = $1; pending = 1; layers++
                 if ($2 == "linear") { match($0, /N=[0-9]+/); want = substr($0, RSTART + 2, RLENGTH - 2) }
                 else { match($0, /H=[0-9]+/); h = substr($0, RSTART + 2, RLENGTH - 2)
                        match($0, /I=[0-9]+/); i = substr($0, RSTART + 2, RLENGTH - 2)
                        match($0, /E=[0-9]+/); e = substr($0, RSTART + 2, RLENGTH - 2)
                        want = e * (2 * i + h) }
                 next }
    /^  fp8 fold: / { if (!pending) { print "fold line without a layer: " $0; bad = 1 }
                      pending = 0; folds++
                      if ($5 != want) { print name ": " $5 " rows counted, the layer has " want; bad = 1 }
                      if ($3 > $5) { print name ": more rows fold than it has"; bad = 1 } }
    END { if (pending) { print "no fold line after " name; bad = 1 }
          if (layers == 0 || folds != layers) { print layers " layers, " folds " fold lines"; bad = 1 }
          exit bad }' "$1" || { cat "$1" >&2; fail "$1: fold lines do not match the layers"; }
}

"$mxq" explain "$tmp/q4" --act fp8-dynamic-token >"$tmp/q4.txt" || fail "explain q4 exited $?"
check_rows "$tmp/q4.txt"
# MXFP4 rows of the sample span few binades: every row folds.
! grep '^  fp8 fold: ' "$tmp/q4.txt" | grep -v ' 0 take per-block promotion' \
  || fail "an MXFP4 layer of the sample has rows that do not fold"
grep -q '^  fp8 fold: 6144 of 6144 rows fold (100.0%); 0 take per-block promotion' "$tmp/q4.txt" \
  || fail "the MoE block's 8 x (2 x 256 + 256) rows are not all counted"

"$mxq" explain "$tmp/q8" --act fp8-dynamic-token >"$tmp/q8.txt" || fail "explain q8 exited $?"
check_rows "$tmp/q8.txt"
# MXFP8 elements use E4M3's whole range: some rows' blocks cannot share one base.
grep '^  fp8 fold: ' "$tmp/q8.txt" | grep -qv ' 0 take per-block promotion' \
  || fail "no MXFP8 row of the sample needs promotion (expected some)"

# No FP8 key, no fold lines; the static key without input scales says why it did not count.
"$mxq" explain "$tmp/q4" >"$tmp/plain.txt"
! grep -q 'fp8 fold' "$tmp/plain.txt" || fail "fold lines without an FP8 activation key"
"$mxq" explain "$tmp/q4" --act fp8-static-tensor >"$tmp/static.txt" || true
grep -q '^  fp8 fold: not counted: .*input_scale' "$tmp/static.txt" \
  || { cat "$tmp/static.txt" >&2; fail "fp8-static-tensor without input scales: no 'not counted' line"; }
echo "cli_explain_fp8_fold: ok"
