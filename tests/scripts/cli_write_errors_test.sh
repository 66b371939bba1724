#!/usr/bin/env bash
# The mxq CLI (issues 13 and 19): every writing command (sample, quantize, convert, dequantize)
# creates missing parent directories of its output; an allocation failure exits with code 3
# and a "resource exhausted" message, not 1 / "internal error".
#   tests/scripts/cli_write_errors_test.sh PATH_TO_MXQ
set -euo pipefail
mxq=$(realpath "$1")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxq_cli_write_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$mxq" sample "$tmp/a/b/sample" >/dev/null || fail "sample into a missing parent"
[ -f "$tmp/a/b/sample/config.json" ] || fail "sample: no config.json"
"$mxq" quantize "$tmp/a/b/sample" -o "$tmp/c/d/q" >/dev/null || fail "quantize into a missing parent"
[ -f "$tmp/c/d/q/config.json" ] || fail "quantize: no config.json"
"$mxq" convert "$tmp/c/d/q" --to compressed-tensors -o "$tmp/e/f/ct" >/dev/null ||
  fail "convert into a missing parent"
[ -f "$tmp/e/f/ct/config.json" ] || fail "convert: no config.json"
"$mxq" dequantize "$tmp/c/d/q" -o "$tmp/g/h/dense" >/dev/null || fail "dequantize into a missing parent"
[ -f "$tmp/g/h/dense/config.json" ] || fail "dequantize: no config.json"
left=$(find "$tmp" -name '*.tmp-*' -o -name '*.old-*')
[ -z "$left" ] || fail "temp directories left: $left"

# A parent that cannot be created is a clear error (exit 1) naming it.
touch "$tmp/file"
set +e
"$mxq" sample "$tmp/file/sub/s" 2>"$tmp/err1"
rc=$?
set -e
[ "$rc" = 1 ] || fail "sample under a file: exit $rc, want 1"
grep -q "cannot create parent directory '$tmp/file/sub'" "$tmp/err1" || { cat "$tmp/err1"; fail "unclear error"; }

# Out of host memory: tokens x K activations far beyond the address-space limit.
set +e
(ulimit -v 4000000; "$mxq" run "$tmp/c/d/q" --tokens 100000000000 >/dev/null 2>"$tmp/err2")
rc=$?
set -e
[ "$rc" = 3 ] || { cat "$tmp/err2"; fail "out of memory: exit $rc, want 3"; }
grep -q "resource exhausted" "$tmp/err2" || { cat "$tmp/err2"; fail "no 'resource exhausted' message"; }
echo "cli writing commands (missing parents) and the out-of-memory exit code: ok"
