#!/usr/bin/env bash
# On an H200, .carry staged by scripts/h200-pending-prepare.sh: the runs the
# H200 still owes (NEXT-GPU-RUN.md), most important first, each bounded so
# that the whole fits one device call (about 540 s):
#  1. PERF-LOG s1: 27bc74e's build and H200 table (A) against this build
#     and the committed table (B), whole bench, 2 rounds;
#  2. PERF-LOG x1: the H200 table's wgmma_expand buckets (run-xwg-confirm.sh);
#  3. PERF-LOG h200-t1: the merged H200 table (run-confirm.sh);
#  4. the GPU suite's wgmma_expand cases and the one-n8-tile-per-warp
#     one-shots (the staged combine's x2 forms, not yet run on any GPU).
# Everything under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card != *H200* ]]; then
  echo "not an H200: these runs confirm the H200 table; nothing run"
  exit 0
fi
[ -f .carry/gpu-bundle.tgz ] && tar xzf .carry/gpu-bundle.tgz -C .carry
echo "=== s1 build A/B ($(date +%T))"
A=.carry/old:.carry/old/h200.json B=.carry ROUNDS=2 NAME=s1-h200 BENCH_LIMIT=80 \
  timeout 200 bash scripts/device/run-build-ab.sh 2>&1 | tail -2
echo "=== x1 buckets ($(date +%T))"
OUT=$OUT timeout 110 bash scripts/device/run-xwg-confirm.sh
echo "=== merged table ($(date +%T))"
OUT=$OUT timeout 170 bash scripts/device/run-confirm.sh 2>&1 | tail -2
echo "=== suite ($(date +%T))"
mkdir -p "$OUT/suite"
OUT=$OUT/suite timeout ${SUITE_LIMIT:-75} bash scripts/device/run-gpu-suite.sh \
  --gtest_filter='*_bn32*:*_xwg*' > "$OUT/suite.txt" 2>&1
echo "suite exit $?: $(grep -c '^\[       OK' "$OUT/suite/gpu_tests.log") passed," \
  "$(grep -c '^\[  FAILED' "$OUT/suite/gpu_tests.log") failed"
echo "=== done ($(date +%T))"
