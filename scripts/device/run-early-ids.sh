#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged by scripts/gpu-prepare.sh and
# scripts/bench-prepare.sh on the change, with the build before it under
# .carry/head): the sorted blocks' row ids loaded before the exit test
# (PERF-LOG h200-e1), in one call:
#  1. whole-bench rounds, alternating: A = the build before with the H200
#     table before the twelfth session (.carry/h200-old.json; H200 only),
#     B = the build before, C = this build, both with the committed table.
#     B vs C is the change; A vs B confirms the committed H200 table.
#     NO_CONFIRM=1, or on another card: A = the build before, B = this build.
#  2. the GPU suite on this build's kernels (what time is left).
# Everything in $OUT (early-ids.tar.gz, suite/).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* && -z ${NO_CONFIRM:-} ]]; then
  A=.carry/head:.carry/h200-old.json B=.carry/head C=.carry ROUNDS=${ROUNDS:-2} \
    NAME=early-ids BENCH_LIMIT=80 bash scripts/device/run-build-ab.sh
else
  A=.carry/head B=.carry ROUNDS=${ROUNDS:-2} NAME=early-ids BENCH_LIMIT=80 \
    bash scripts/device/run-build-ab.sh
fi
echo "=== GPU suite ($(date +%T))"
OUT=$OUT/suite timeout ${SUITE_LIMIT:-240} bash scripts/device/run-gpu-suite.sh \
  > "$OUT/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:|tests from .* ran" "$OUT/suite.txt" | tail -20
