#!/usr/bin/env bash
# Builds the benchmark here and stages it under .carry/ with a disk cache of
# every variant it dispatches to (generated here: the GPU machine has no
# LLVM). Then, with .carry carried: bash scripts/device/run-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
# The card the device tool lends (its name selects the tuned table).
MOELORA_GPU=${MOELORA_GPU:-NVIDIA H200}
cmake -S . -B "$BUILD" -G Ninja >/dev/null
ninja -C "$BUILD" -j2 moelora-bench moelora-bench-prepare
mkdir -p .carry/bin .carry/lib
rm -rf .carry/bench-cache
MOELORA_TARGET_GPU="$MOELORA_GPU" "$BUILD"/benchmarks/moelora-bench-prepare .carry/bench-cache ${FP16:+--fp16}
# BENCH_UNTUNED=1: also the variants of vLLM's rules alone, for
# `moelora-bench --tuned-table none` (an A/B of the tuned table).
if [ -n "${BENCH_UNTUNED:-}" ]; then
  MOELORA_TARGET_GPU="$MOELORA_GPU" "$BUILD"/benchmarks/moelora-bench-prepare .carry/bench-cache ${FP16:+--fp16} --tuned-table none
fi
cp "$BUILD"/benchmarks/moelora-bench .carry/bin/
strip .carry/bin/moelora-bench
for lib in libfmt.so.9 libyaml-cpp.so.0.7; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/lib/
done
du -sh .carry
