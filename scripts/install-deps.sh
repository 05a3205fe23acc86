#!/usr/bin/env bash
# Installs the Debian packages moelora builds with, skipping those already present.
set -euo pipefail
packages=(
  cmake ninja-build g++ clang-format
  llvm-22-dev libmlir-22-dev mlir-22-tools lld-22
  libyaml-cpp-dev libfmt-dev libzstd-dev zlib1g-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libxxhash-dev
  python3-build python3-setuptools python3-wheel binutils
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
if [ ! -x /usr/local/cuda/bin/ptxas ]; then
  echo "install-deps: note: /usr/local/cuda/bin/ptxas not found; PTX will be generated but not assembled"
fi
