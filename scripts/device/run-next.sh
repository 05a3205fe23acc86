#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's first
# section says): the first call of the session, on whichever card came.
#  H100: run-tune-ab.sh (the suite's SUITE_FILTER cases, the staged tune,
#        its merge and an A/B), results in $OUT/$NAME.
#  H200: the suite's SUITE_FILTER cases, then the H200 table (A) against the H100
#        table (B) on the whole bench, for table_choice.py: the H200 table
#        lacks every H100 session's choices. Results in $OUT/h200.
set -uo pipefail
OUT=${OUT:-/tmp/out}
SUITE_FILTER=${SUITE_FILTER:-*cluster*}
NAME=${NAME:-cluster16}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  W=$OUT/h200
  mkdir -p "$W"
  OUT=$W/suite timeout 150 bash scripts/device/run-gpu-suite.sh \
    --gtest_filter="$SUITE_FILTER" > "$W/suite.txt" 2>&1
  echo "suite exit $?"
  grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
  # A table serves only the GPU it names: the H100 table renamed for the
  # H200 (staged as .carry/h100-as-h200.json).
  A=.carry B=.carry:.carry/h100-as-h200.json ROUNDS=2 \
    NAME=tables OUT=$W BENCH_LIMIT=80 \
    bash scripts/device/run-build-ab.sh > "$W/tables.log" 2>&1
  echo "tables exit $?"; tail -1 "$W/tables.log"
else
  SUITE_FILTER=$SUITE_FILTER NAME=$NAME bash scripts/device/run-tune-ab.sh
  # The device brings back a few files per call: the suite's and the
  # tune's folders (per-candidate times, tuned.json) travel as one archive.
  (cd "$OUT/$NAME" && tar czf suite-tune.tar.gz suite tune && rm -rf suite tune)
fi
