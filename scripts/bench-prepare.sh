#!/usr/bin/env bash
# Builds the benchmark here and stages it under .carry/ with a disk cache of
# every variant it dispatches to (generated here: the GPU machine has no
# LLVM). Then, with .carry carried: bash scripts/device/run-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -G Ninja >/dev/null
ninja -C "$BUILD" -j2 moelora-bench moelora-bench-prepare
mkdir -p .carry/bin .carry/lib
rm -rf .carry/bench-cache
MOELORA_TARGET_GPU="NVIDIA H100 80GB HBM3" "$BUILD"/benchmarks/moelora-bench-prepare .carry/bench-cache ${FP16:+--fp16}
cp "$BUILD"/benchmarks/moelora-bench .carry/bin/
strip .carry/bin/moelora-bench
for lib in libfmt.so.9 libyaml-cpp.so.0.7; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/lib/
done
du -sh .carry
