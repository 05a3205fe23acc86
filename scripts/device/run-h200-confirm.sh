#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's first
# section says): the merged H200 table (specs/tuned/NVIDIA_H200.json, the
# default lookup) against the table before it (.carry/h200-old.json) over
# the whole bench, 2 rounds. Only on an H200: elsewhere it stops at once (a
# table serves only the GPU it names). -> $OUT/confirm.tar.gz
set -uo pipefail
OUT=${OUT:-/tmp/out}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "$card"
if [[ $card != *H200* ]]; then
  echo "not an H200: nothing to confirm here"
  exit 0
fi
A=.carry:.carry/h200-old.json B=.carry ROUNDS=2 NAME=confirm OUT=$OUT \
  BENCH_LIMIT=80 bash scripts/device/run-build-ab.sh > "$OUT/confirm.log" 2>&1
echo "confirm exit $?"
grep geomean "$OUT/confirm.log"
