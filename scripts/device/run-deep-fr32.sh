#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md says): the
# tenth session's second call.
#  1. GPU suite: the deep-pipeline and 32-row few-rows
#     cases.
#  2. The H100 table (A) against .carry/fr32.json (B: few_rows with
#     few_rows_tile 32 on every sorted one_shot / two_kernel entry of 1024
#     or more pairs), M 512 cases, for table_choice.py.
#  3. The deep-stages tune of the sorted M 64 buckets, merged into the H100
#     table, and an A/B of the committed table against the merged one over
#     the M 64 cases (the only ones its entries serve).
# On an H200, run-next.sh's H200 branch instead (the table comparison).
set -uo pipefail
OUT=${OUT:-/tmp/out}
SUITE='*stages*:*rows32*'
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
if [[ $card == *H200* ]]; then
  SUITE_FILTER=$SUITE bash scripts/device/run-next.sh
  exit
fi
T=specs/tuned/NVIDIA_H100_80GB_HBM3.json
W=$OUT/deep
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
# In order of need, so that a call cut short keeps the most: the new
# kernels' correctness, the few_rows_tile A/B, then the tune.
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout 120 bash scripts/device/run-gpu-suite.sh \
  --gtest_filter="$SUITE" > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
echo "=== fr32 A/B ($(date +%T))"
A=.carry:$T B=.carry:.carry/fr32.json FILTER=_M512 ROUNDS=2 NAME=fr32 \
  OUT=$W BENCH_LIMIT=60 bash scripts/device/run-build-ab.sh > "$W/fr32.log" 2>&1
echo "fr32 exit $?"; tail -1 "$W/fr32.log"
# What the call has so far, as one archive (a few files come back per
# call), before the tune.
tar czf "$OUT/part1.tar.gz" -C "$OUT" deep && rm -rf "$W"
# The tune (its suite step runs no case: the suite ran above).
SUITE_FILTER=-* NAME=m64 FILTER=_M64_ TUNE_LIMIT=120 \
  bash scripts/device/run-tune-ab.sh
tar czf "$OUT/part2.tar.gz" -C "$OUT" m64 && rm -rf "$OUT/m64"
echo "=== done ($(date +%T))"
