#!/usr/bin/env bash
# `mxq explain MODEL --tp N --ep N --rank R` (issue 21): each rank's shard of every layer of the
# embedded sample model (quantized to MXFP4 here), as the C++ sharding (include/mxq/shard.h)
# describes it, and the errors: a split the sharding refuses, a rank that is not one, --tp with
# a problem instead of a model.
#   tests/scripts/cli_explain_shards_test.sh PATH_TO_MXQ
set -euo pipefail
mxq=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$mxq" sample "$tmp/bf16" >/dev/null
"$mxq" quantize "$tmp/bf16" -o "$tmp/q" >/dev/null

# Lines that must appear verbatim (after the layer's own line). Byte counts: an MXFP4 row of K
# elements is K/2 packed bytes + K/32 scales; the sample's MoE biases are BF16.
expect() {  # expect FILE LINE...
  local f=$1; shift
  for line in "$@"; do
    grep -qxF -- "$line" "$f" || { cat "$f" >&2; fail "missing line: '$line'"; }
  done
}

"$mxq" explain "$tmp/q" --tp 2 --ep 2 >"$tmp/tp2ep2.txt" || fail "explain --tp 2 --ep 2 exited $?"
expect "$tmp/tp2ep2.txt" \
  "shards   --tp 2 (linear: row parallel for o_proj,down_proj,out_proj,wo,w2, column for the rest), --ep 2, every rank" \
  "  shard rank 0 of 2: column parallel, N [0, 256) of 512, K [0, 256) of 256, 34.0 KiB (view); backend cpu" \
  "  shard rank 1 of 2: column parallel, N [256, 512) of 512, K [0, 256) of 256, 34.0 KiB (view); backend cpu" \
  "  shard rank 0 of 2: row parallel, N [0, 256) of 256, K [0, 256) of 512, 34.0 KiB (copy); backend cpu" \
  "  shard rank 1 of 2: row parallel, N [0, 256) of 256, K [256, 512) of 512, 34.0 KiB (copy); backend cpu" \
  "  shard rank 0 of 2: expert parallel, experts [0, 4) of 8, I [0, 256) of 256, 414.0 KiB (view); backend cpu" \
  "  shard rank 1 of 2: expert parallel, experts [4, 8) of 8, I [0, 256) of 256, 414.0 KiB (view); backend cpu"
# every layer has one line per rank: 19 layers x 2 ranks
n=$(grep -c '^  shard rank ' "$tmp/tp2ep2.txt")
[ "$n" = 38 ] || fail "expected 38 shard lines (19 layers x 2 ranks), got $n"
# the shard lines follow their layer: down_proj (K = 512) is row parallel, gate_proj column
grep -A1 '^model.layers.0.mlp.down_proj ' "$tmp/tp2ep2.txt" | grep -q 'row parallel, N \[0, 256) of 256, K \[0, 256) of 512' \
  || fail "down_proj's first shard line is not its row-parallel rank 0"

# --tp 4 --rank 3 without --ep: MoE layers split I (tensor parallel); rank 3's lines only.
"$mxq" explain "$tmp/q" --tp 4 --rank 3 >"$tmp/tp4r3.txt" || fail "explain --tp 4 --rank 3 exited $?"
expect "$tmp/tp4r3.txt" \
  "  shard rank 3 of 4: tensor parallel, experts [0, 8) of 8, I [192, 256) of 256, 206.0 KiB (copy); backend cpu" \
  "  shard rank 3 of 4: row parallel, N [0, 256) of 256, K [384, 512) of 512, 17.0 KiB (copy); backend cpu" \
  "  shard rank 3 of 4: column parallel, N [96, 128) of 128, K [0, 256) of 256, 4.2 KiB (view); backend cpu"
! grep -q '^  shard rank [012] ' "$tmp/tp4r3.txt" || fail "--rank 3 printed another rank's shard"
n=$(grep -c '^  shard rank 3 of 4' "$tmp/tp4r3.txt")
[ "$n" = 19 ] || fail "expected 19 shard lines for rank 3, got $n"

# --row-parallel: gate_proj split along K instead
"$mxq" explain "$tmp/q" --tp 2 --rank 0 --row-parallel gate_proj >"$tmp/rp.txt"
grep -A1 '^model.layers.0.mlp.gate_proj ' "$tmp/rp.txt" | grep -qF "row parallel, N [0, 512) of 512, K [0, 128) of 256" \
  || fail "--row-parallel gate_proj did not split gate_proj along K"
grep -A1 '^model.layers.0.mlp.down_proj ' "$tmp/rp.txt" | grep -qF "column parallel, N [0, 128) of 256" \
  || fail "--row-parallel gate_proj: down_proj should be column parallel"

# A split the sharding refuses is an error line naming the rule, and exit code 1.
if "$mxq" explain "$tmp/q" --tp 3 >"$tmp/tp3.txt"; then fail "--tp 3 (N = 512 and K = 512 do not split) exited 0"; fi
expect "$tmp/tp3.txt" \
  "  shard error: shard linear (column parallel): N = 512 does not split into 3 equal row ranges (linear mxfp4 x bf16 -> bf16, M=1 N=512 K=256)"
grep -qF "  shard error: shard moe (expert parallel): 16 ranks for 8 experts leave a rank without experts" \
  <("$mxq" explain "$tmp/q" --ep 16 || true) || fail "--ep 16 over 8 experts is not an error line"
if "$mxq" explain "$tmp/q" --tp 2 --rank 2 >/dev/null 2>"$tmp/err.txt"; then fail "--rank 2 of --tp 2 exited 0"; fi
grep -qF -- "--rank 2 is not a rank of --tp 2 / --ep 1" "$tmp/err.txt" || fail "wrong --rank message: $(cat "$tmp/err.txt")"
if "$mxq" explain --op linear --tp 2 >/dev/null 2>"$tmp/err.txt"; then fail "--tp with a problem exited 0"; fi
grep -qF "give a model directory" "$tmp/err.txt" || fail "wrong message for --tp with a problem: $(cat "$tmp/err.txt")"
# Without --tp / --ep, explain prints no shard lines (unchanged output).
! "$mxq" explain "$tmp/q" | grep -q '^  shard\|^shards' || fail "plain explain printed shard lines"
echo "ok"
