#!/usr/bin/env bash
# SASS tools for the build machine (no GPU needed): NVIDIA's cuobjdump and nvdisasm from PyPI
# (the CUDA toolkit here ships nvcc and ptxas only). Installs into build/tools/cuda-sass (git-ignored)
# and prints the PATH line. Then, e.g.:
#   cuobjdump -sass -fun <mangled> build/cuda/src/cuda/CMakeFiles/mxq_cuda_hopper.dir/hopper/instances/bf16_e2m1.cu.o > k.sass
#   python3 scripts/sass_loops.py k.sass      # per loop: instructions, HGMMA (dummy ones too), WARPGROUP.ARRIVE
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/tools/cuda-sass
ver=${MXQ_SASS_TOOLS_VERSION:-13.5.37}
if [[ ! -x $dest/bin/cuobjdump || ! -x $dest/bin/nvdisasm ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps -q -d "$tmp" "nvidia-cuda-cuobjdump==$ver" "nvidia-cuda-nvdisasm==$ver"
  mkdir -p "$tmp/x"
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
  mkdir -p "$dest.tmp/bin"
  cp "$(find "$tmp/x" -type f -name cuobjdump)" "$(find "$tmp/x" -type f -name nvdisasm)" "$dest.tmp/bin/"
  chmod +x "$dest.tmp/bin/"*
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
echo "export PATH=$PWD/$dest/bin:\$PATH"
