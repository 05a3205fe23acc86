#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried with .carry/xe.tgz
# (scripts/candidate-prepare.sh with CAND=xe and each card's table with
# early_expand on every one_shot entry, $card-xe.json): the early_expand
# GPU cases, then an A/B of the committed table (A) against it with
# early_expand (B) and against itself with clusters asking for the
# load-balancing scheduling policy (C), same build. B_TABLE (a file under
# .carry) replaces B's table; NO_C=1 leaves C out.
set -uo pipefail
OUT=${OUT:-/tmp/out}
source scripts/device/candidate-env.sh xe
if [ -z "${NO_SUITE:-}" ]; then
  echo "=== suite ($(date +%T))"
  OUT=$OUT/suite timeout "${SUITE_LIMIT:-150}" bash scripts/device/run-gpu-suite.sh \
    --gtest_filter="${SUITE_FILTER:-*_xe*}" > "$OUT/suite.txt" 2>&1
  echo "exit $?"
  grep -E "PASSED|FAILED|exit:" "$OUT/suite.txt" | tail -12
fi
B_TABLE=${B_TABLE:-xe/$g-xe.json}
B_TABLE=${B_TABLE//\$g/$g}
C=.carry/xe:$T C_ENV=MOELORA_CLUSTER_POLICY=balance
[ -n "${NO_C:-}" ] && C=
A=.carry/xe:$T B=.carry/xe:.carry/$B_TABLE C=$C C_ENV=${C_ENV} ROUNDS=${ROUNDS:-2} \
  BENCH_LIMIT=${BENCH_LIMIT:-80} NAME=xe bash scripts/device/run-build-ab.sh
