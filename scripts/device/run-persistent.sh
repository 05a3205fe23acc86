#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's
# persistent section says): the fourteenth session's call, the persistent
# one-shot grid (issue 13, item 2).
#  1. GPU suite: the persistent cases (every sorted one-shot case that
#     allows it, once with one program per lora slot, once with the
#     driver's resident grid), each also compared bit for bit with the
#     kernel without it. -> $OUT/part0.tar.gz
#  2. Prefill A/B, PS_ROUNDS rounds (default 2): A the committed table of
#     the card, B .carry/ps-<card>.json (persistent on every sorted
#     one_shot entry), for bucket_flag_choice.py. -> $OUT/part1.tar.gz
#  PS=ps2 takes .carry/ps2-<card>.json instead (the same with each
#  entry's min_blocks_per_sm set to the blocks per SM of its kernel
#  without the flag: registers matched); NO_SUITE=1 skips step 1.
#  3. CONFIRM=1 on an H200: run-confirm.sh (the merged H200 table against
#     the one before it, whole bench). -> $OUT/confirm.tar.gz
set -uo pipefail
OUT=${OUT:-/tmp/out}
SUITE=${SUITE:-'*_ps*'}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
W=$OUT/ps
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
if [ -z "${NO_SUITE:-}" ]; then
  echo "=== GPU suite ($(date +%T))"
  OUT=$W/suite timeout ${SUITE_LIMIT:-200} bash scripts/device/run-gpu-suite.sh \
    --gtest_filter="$SUITE" > "$W/suite.txt" 2>&1
  echo "exit $?"
  grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
  # Kept even if the A/B below is cut short.
  tar czf "$OUT/part0.tar.gz" -C "$W" card.txt suite.txt suite
fi
echo "=== A/B ($(date +%T))"
# A table serves only the GPU it names.
PS=${PS:-ps}
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json TB=.carry/$PS-h100.json
if [[ $card == *H200* ]]; then
  TA=specs/tuned/NVIDIA_H200.json TB=.carry/$PS-h200.json
fi
A=.carry:$TA B=.carry:$TB FILTER=prefill ROUNDS=${PS_ROUNDS:-2} NAME=ab \
  OUT=$W BENCH_LIMIT=${BENCH_LIMIT:-60} \
  bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
echo "ab exit $?"; grep geomean "$W/ab.log"
tar czf "$OUT/part1.tar.gz" -C "$OUT" ps && rm -rf "$W"
if [ -n "${CONFIRM:-}" ] && [[ $card == *H200* ]]; then
  echo "=== confirm ($(date +%T))"
  bash scripts/device/run-confirm.sh
fi
echo "=== done ($(date +%T))"
