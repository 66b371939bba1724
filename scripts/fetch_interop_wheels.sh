#!/usr/bin/env bash
# Downloads compressed-tensors and the light dependencies it needs beyond a torch install
# (no torch, no CUDA libraries) into build/wheels, for hosts without internet access that have
# torch (the GPU host). Run where PyPI is reachable; tests/python/run_interop.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYVER:-3.12}
mkdir -p build/wheels
python3 -m pip download -q --no-deps --python-version "$py" \
  --platform manylinux2014_x86_64 --only-binary=:all: -d build/wheels \
  compressed-tensors loguru transformers huggingface_hub pydantic pydantic-core annotated-types \
  annotated-doc typing-inspection typer click rich shellingham markdown-it-py mdurl pygments \
  httpx httpx2 httpcore httpcore2 anyio h11 sniffio truststore
ls build/wheels
