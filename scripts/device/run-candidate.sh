#!/usr/bin/env bash
# On the GPU machine, .carry carried: a candidate build staged as
# .carry/$CAND.tgz (a folder $CAND with bin/moelora-bench,
# bin/moelora_gpu_tests, bench-cache/, capi-cache/ and gpu-bundle/, made by
# scripts/candidate-prepare.sh) against the build in .carry (A):
#  1. whole bench, A and the candidate alternately, ROUNDS rounds each
#     (run-build-ab.sh; both on the committed tables, or the candidate on
#     its B_TABLE, a table file it carries, with CAND_C=1 adding the
#     candidate on the committed tables as side C, and D_TABLE / E_TABLE
#     the candidate on more of its tables as sides D and E);
#  2. the GPU suite on the candidate's kernels, as far as SUITE_LIMIT allows
#     (SUITE_FILTER narrows it).
# Works on either card the device tool lends. Everything under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
CAND=${CAND:-cand}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
tar xzf ".carry/$CAND.tgz" -C .carry
if [ -z "${NO_AB:-}" ]; then
  echo "=== A/B ($(date +%T))"
  C=${CAND_C:+.carry/$CAND} D=${D_TABLE:+.carry/$CAND:.carry/$CAND/$D_TABLE} \
  E=${E_TABLE:+.carry/$CAND:.carry/$CAND/$E_TABLE} \
  A=.carry B=.carry/$CAND${B_TABLE:+:.carry/$CAND/$B_TABLE} ROUNDS=${ROUNDS:-2} NAME=$CAND-ab BENCH_LIMIT=80 \
    timeout ${AB_LIMIT:-330} bash scripts/device/run-build-ab.sh 2>&1 | tail -2
fi
echo "=== suite ($(date +%T))"
# run-gpu-suite.sh reads .carry's binaries, bundle and C ABI cache.
for d in bin/moelora_gpu_tests gpu-bundle capi-cache; do
  rm -rf ".carry/$d"
  cp -r ".carry/$CAND/$d" ".carry/$d"
done
mkdir -p "$OUT/suite"
OUT=$OUT/suite timeout ${SUITE_LIMIT:-200} bash scripts/device/run-gpu-suite.sh \
  ${SUITE_FILTER:+--gtest_filter="$SUITE_FILTER"} > "$OUT/suite.txt" 2>&1
echo "suite exit $?: $(grep -c '^\[       OK' "$OUT/suite/gpu_tests.log") passed," \
  "$(grep -c '^\[  FAILED' "$OUT/suite/gpu_tests.log") failed"
gzip -f "$OUT/suite/gpu_tests.log"
echo "=== done ($(date +%T))"
