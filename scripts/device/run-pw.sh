#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's first
# section says): the twelfth session's call, the producer warp.
#  1. GPU suite: the producer-warp cases (every wgmma case of two or more
#     stages again with producer_warp, tma ones included), each launched
#     ten more times for the same bits.
#  2. Prefill A/B/C, 2 rounds: A the committed table, B .carry/pw.json
#     (producer_warp on every wgmma entry), C .carry/tmapw.json (tma_weights
#     and producer_warp on them), for bucket_flag_choice.py.
#  -> $OUT/part0.tar.gz (the suite), $OUT/part1.tar.gz (the A/B)
set -uo pipefail
OUT=${OUT:-/tmp/out}
SUITE=${SUITE:-'*_pw*'}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
W=$OUT/pw
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout 200 bash scripts/device/run-gpu-suite.sh \
  --gtest_filter="$SUITE" > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
# Kept even if the A/B below is cut short.
tar czf "$OUT/part0.tar.gz" -C "$W" card.txt suite.txt suite
echo "=== A/B/C ($(date +%T))"
# A table serves only the GPU it names: on an H200, the staged copies that
# name it (their kernels are in the bench cache too).
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json TB=.carry/pw.json TC=.carry/tmapw.json
if [[ $card == *H200* ]]; then
  TA=.carry/h100-as-h200.json TB=.carry/pw-h200.json TC=.carry/tmapw-h200.json
fi
# NO_C=1: A and B only (less device time).
[ -n "${NO_C:-}" ] && TC=
A=.carry:$TA B=.carry:$TB C=${TC:+.carry:$TC} \
  FILTER=prefill ROUNDS=${PW_ROUNDS:-2} NAME=ab OUT=$W BENCH_LIMIT=60 \
  bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
echo "ab exit $?"; grep geomean "$W/ab.log"
tar czf "$OUT/part1.tar.gz" -C "$OUT" pw && rm -rf "$W"
echo "=== done ($(date +%T))"
