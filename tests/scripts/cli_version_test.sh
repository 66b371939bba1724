#!/usr/bin/env bash
# `mxq --version` (issue 20): "mxq X.Y.Z" with the CMake project version, plus
# " (commit <hash>)" when built from a git checkout, where <hash> must be a commit of it.
#   tests/scripts/cli_version_test.sh PATH_TO_MXQ PROJECT_VERSION SOURCE_DIR
set -euo pipefail
mxq=$1 want=$2 src=$3
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$mxq" --version) || fail "mxq --version exited $?"
echo "$out"
re='^mxq ([0-9]+\.[0-9]+\.[0-9]+)( \(commit ([0-9a-f]{7,})(-dirty)?\))?$'
[[ $out =~ $re ]] || fail "'$out' is not 'mxq X.Y.Z[ (commit HASH)]'"
[ "${BASH_REMATCH[1]}" = "$want" ] || fail "version ${BASH_REMATCH[1]}, CMake project says $want"
hash=${BASH_REMATCH[3]}
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  [ -n "$hash" ] || fail "built from a git checkout but no commit in '$out'"
  git -C "$src" cat-file -e "$hash^{commit}" 2>/dev/null || fail "$hash is not a commit of $src"
fi
# The version flag wins over the required subcommand; an unknown flag is still an error.
"$mxq" --version >/dev/null
if "$mxq" --no-such-flag >/dev/null 2>&1; then fail "an unknown flag was accepted"; fi
echo "ok"
