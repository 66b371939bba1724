#!/usr/bin/env bash
# Installs everything mxq needs to build and test on a fresh Debian machine. Idempotent:
# packages already present are skipped, so it is cheap to run before every build.
set -euo pipefail

APT_PACKAGES=(
  cmake ninja-build g++ make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libopenblas-dev
  python3 python3-pip python3-dev
  clang libclang-rt-14-dev
)
PIP_PACKAGES=(numpy ml_dtypes pytest nanobind)  # nanobind: the Python package's binding (python/)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import numpy, ml_dtypes, pytest, nanobind" 2>/dev/null; then
  echo "[setup] pip install ${PIP_PACKAGES[*]}"
  "$PY" -m pip install -q "${PIP_PACKAGES[@]}" 2>/dev/null \
    || "$PY" -m pip install -q --break-system-packages "${PIP_PACKAGES[@]}"
fi
echo "[setup] ok"
