#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/gpu-prepare.sh,
# scripts/bench-prepare.sh, then scripts/tune-prepare.sh with
# SWEEP=specs/tune/sweep-cluster16.yaml
# WORKLOAD=specs/tune/workload-cluster16.yaml, all for the card's table $T):
# the GPU suite (with its 16-block cluster cases), the tune (each bucket's
# committed entry competes), its winners merged into $T, and the whole
# benchmark with $T (A) and the merged table (B), alternating, 2 rounds.
# Everything lands in $OUT/cluster16/ as it is written, so a run cut short
# still brings back what it finished.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$OUT/cluster16
mkdir -p "$W"
T=${T:-specs/tuned/NVIDIA_H100_80GB_HBM3.json}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
echo "=== GPU suite ($(date +%T))"
# SUITE_FILTER (a gtest filter, e.g. '*cluster*') runs a part of it.
OUT=$W/suite timeout ${SUITE_LIMIT:-240} bash scripts/device/run-gpu-suite.sh \
  ${SUITE_FILTER:+--gtest_filter=$SUITE_FILTER} > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
echo "=== tune ($(date +%T))"
OUT=$W/tune timeout ${TUNE_LIMIT:-240} bash scripts/device/run-tune.sh > "$W/tune.log" 2>&1
echo "exit $?"; tail -3 "$W/tune/tune.txt"
LD_LIBRARY_PATH=$PWD/.carry/lib .carry/bin/moelora-tune-rt merge --base "$T" \
  --update "$W/tune/tuned.json" --out "$W/merged.json" && echo merged
cp -n .carry/tune-cache/* .carry/bench-cache/ 2>/dev/null
# NO_AB=1 stops after the tune (its per-case times against the committed
# entries are the measurement; the A/B then waits for the next call).
if [ -z "${NO_AB:-}" ]; then
  A=.carry:$T B=.carry:$W/merged.json ROUNDS=2 NAME=ab OUT=$W BENCH_LIMIT=120 \
    bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
  echo "ab exit $?"; tail -1 "$W/ab.log"
fi
echo "=== done ($(date +%T))"
