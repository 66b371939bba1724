#!/usr/bin/env bash
# Run where apt and PyPI are reachable (the dev machine): collects what building the mxq Python
# package needs beyond the GPU host's image into build/gpu-deps (carry it to the GPU host):
#   wheels/  nanobind and scikit-build-core (pure Python; the image has versions of its own)
#   debs/    header-only C++ dependencies (nlohmann-json, CLI11), unpacked there with dpkg -x
set -euo pipefail
cd "$(dirname "$0")/../.."
d=build/gpu-deps
rm -rf "$d" && mkdir -p "$d/wheels" "$d/debs"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
  -d "$d/wheels" nanobind scikit-build-core
(cd "$d/debs" && apt-get download nlohmann-json3-dev libcli11-dev 2>/dev/null)
ls -l "$d"/*
