#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's first
# section says): the first call of the session, on whichever card came.
#  H100: the 16-block cluster run (run-tune-ab.sh: suite's cluster cases,
#        the cluster16 tune, its merge and an A/B), results in $OUT/cluster16.
#  H200: the suite's cluster cases, then the H200 table (A) against the H100
#        table (B) on the whole bench, for table_choice.py: the H200 table
#        lacks every H100 session's choices. Results in $OUT/h200.
set -uo pipefail
OUT=${OUT:-/tmp/out}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  W=$OUT/h200
  mkdir -p "$W"
  OUT=$W/suite timeout 150 bash scripts/device/run-gpu-suite.sh \
    --gtest_filter='*cluster*' > "$W/suite.txt" 2>&1
  echo "suite exit $?"
  grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
  A=.carry B=.carry:specs/tuned/NVIDIA_H100_80GB_HBM3.json ROUNDS=2 \
    NAME=tables OUT=$W BENCH_LIMIT=80 \
    bash scripts/device/run-build-ab.sh > "$W/tables.log" 2>&1
  echo "tables exit $?"; tail -1 "$W/tables.log"
else
  SUITE_FILTER='*cluster*' NAME=cluster16 bash scripts/device/run-tune-ab.sh
fi
