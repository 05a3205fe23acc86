#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried with .carry/$CAND.tgz
# (scripts/candidate-prepare.sh with CAND and TABLES holding, for each card
# g in h200 and h100, a variant table $g-<variant>.json of its committed
# table): the GPU suite's SUITE_FILTER cases, then an A/B of the committed
# table (A) against each of VARIANTS (up to four, sides B to E), same build.
#   CAND=rs VARIANTS="xe rs rsxe" SUITE_FILTER='*_rs*' \
#     bash scripts/device/run-table-variants.sh
# A variant whose table the candidate lacks for this card is left out.
# NO_SUITE=1 skips the suite, NO_AB=1 the A/B; ROUNDS (2) and BENCH_LIMIT
# go to run-build-ab.sh (BENCH_LIMIT's default keeps every bench of the call
# within 540 s, at most 80 s each: the call's results come back only whole). Everything lands in $OUT/suite/ and $OUT/$CAND.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
CAND=${CAND:?CAND: the candidate under .carry}
source scripts/device/candidate-env.sh "$CAND"
if [ -z "${NO_SUITE:-}" ]; then
  echo "=== suite ($(date +%T))"
  mkdir -p "$OUT/suite"
  OUT=$OUT/suite timeout "${SUITE_LIMIT:-150}" bash scripts/device/run-gpu-suite.sh \
    --gtest_filter="${SUITE_FILTER:-*}" > "$OUT/suite/suite.txt" 2>&1
  echo "exit $?"
  grep -E "PASSED|FAILED|exit:" "$OUT/suite/suite.txt" | tail -12
fi
[ -n "${NO_AB:-}" ] && exit 0
sides=(B C D E)
declare -A side
n=0
for v in ${VARIANTS:-}; do
  table=".carry/$CAND/$g-$v.json"
  if [ ! -f "$table" ]; then
    echo "no $table: variant $v left out"
    continue
  fi
  [ $n -ge ${#sides[@]} ] && { echo "more than four variants"; exit 2; }
  side[${sides[$n]}]=".carry/$CAND:$table"
  echo "${sides[$n]}: $v"
  n=$((n + 1))
done
[ $n -eq 0 ] && { echo "no variant table for $g"; exit 2; }
ROUNDS=${ROUNDS:-2}
limit=$((540 / (ROUNDS * (n + 1))))
[ $limit -gt 80 ] && limit=80
echo "bench limit ${BENCH_LIMIT:-$limit} s, $ROUNDS rounds of $((n + 1)) sides"
A=".carry/$CAND:$T" B=${side[B]} C=${side[C]:-} D=${side[D]:-} E=${side[E]:-} \
  ROUNDS=$ROUNDS BENCH_LIMIT=${BENCH_LIMIT:-$limit} NAME=$CAND \
  bash scripts/device/run-build-ab.sh
