#!/usr/bin/env bash
# Sets everything up and runs mxq's main job. Until the checkpoint pipeline lands, the main
# job is the numerics demo on an embedded sample (cli/demo.cc).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target mxq
./build/release/mxq demo "$@"
