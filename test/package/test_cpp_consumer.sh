#!/usr/bin/env bash
# C++ engines against the installed package: cmake --install into an empty
# prefix, then examples/engine and examples/tp (the two-kernel halves around
# an engine's collective) configured with find_package(moelora), built and
# run (they plan and warm without a GPU, and launch checked calls with one).
# Usage: test_cpp_consumer.sh <build dir>
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$BUILD" --prefix "$tmp/prefix" >/dev/null
for ex in engine tp; do
  cmake -S "$ROOT/examples/$ex" -B "$tmp/build-$ex" -G Ninja \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
  cmake --build "$tmp/build-$ex" >/dev/null
done
cd "$tmp"
env -u MOELORA_LIB -u LD_LIBRARY_PATH -u MOELORA_TUNED_DIR -u MOELORA_TUNED_TABLE \
  MOELORA_CACHE_DIR="$tmp/cache" MOELORA_TARGET_GPU="NVIDIA H200" \
  "$tmp/build-engine/engine_example" | tee out.txt
grep -q "tuned table: $tmp/prefix/share/moelora/tuned/NVIDIA_H200.json" out.txt ||
  { echo "FAIL: the installed tuned table was not used" >&2; exit 1; }
grep -Eq "^(no GPU: planned and warmed only|launched on the GPU)" out.txt
env -u MOELORA_LIB -u LD_LIBRARY_PATH MOELORA_CACHE_DIR="$tmp/cache" \
  MOELORA_TARGET_GPU="NVIDIA H200" "$tmp/build-tp/tp_example"
