#!/usr/bin/env bash
# A C++ engine against the installed package: cmake --install into an empty
# prefix, then examples/engine configured with find_package(moelora), built
# and run (it plans and warms without a GPU, and launches one checked call
# with one). Usage: test_cpp_consumer.sh <build dir>
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$BUILD" --prefix "$tmp/prefix" >/dev/null
cmake -S "$ROOT/examples/engine" -B "$tmp/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
cd "$tmp"
env -u MOELORA_LIB -u LD_LIBRARY_PATH -u MOELORA_TUNED_DIR -u MOELORA_TUNED_TABLE \
  MOELORA_CACHE_DIR="$tmp/cache" MOELORA_TARGET_GPU="NVIDIA H200" \
  "$tmp/build/engine_example" | tee out.txt
grep -q "tuned table: $tmp/prefix/share/moelora/tuned/NVIDIA_H200.json" out.txt ||
  { echo "FAIL: the installed tuned table was not used" >&2; exit 1; }
grep -Eq "^(no GPU: planned and warmed only|launched on the GPU)" out.txt
