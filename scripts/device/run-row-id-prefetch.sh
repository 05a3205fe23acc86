#!/usr/bin/env bash
# On the GPU machine, .carry carried: the fourteenth session's e2 A/B (the
# sorted blocks' row-id prefetch). .carry/old holds the build before it
# (bin/moelora-bench, bench-cache/), .carry this one.
#  1. GPU suite, SUITE_LIMIT seconds (default 240). -> $OUT/part0.tar.gz
#  2. A/B, sides alternating, ROUNDS (default 2): the sorted paths (prefill
#     and two_kernel cases, filter "_M" minus decode: two passes) of A
#     .carry/old against B .carry, each on the card's committed table.
#     -> $OUT/part1.tar.gz
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$OUT/e2
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout ${SUITE_LIMIT:-240} bash scripts/device/run-gpu-suite.sh > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
tar czf "$OUT/part0.tar.gz" -C "$W" card.txt suite.txt suite
for f in prefill two_kernel; do
  echo "=== A/B $f ($(date +%T))"
  A=.carry/old B=.carry FILTER=$f ROUNDS=${ROUNDS:-2} NAME=ab-$f OUT=$W \
    BENCH_LIMIT=${BENCH_LIMIT:-60} bash scripts/device/run-build-ab.sh > "$W/ab-$f.log" 2>&1
  grep geomean "$W/ab-$f.log"
done
tar czf "$OUT/part1.tar.gz" -C "$OUT" e2
echo "=== done ($(date +%T))"
