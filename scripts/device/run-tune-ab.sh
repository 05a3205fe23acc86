#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/gpu-prepare.sh,
# scripts/bench-prepare.sh, then scripts/tune-prepare.sh with a SWEEP and a
# WORKLOAD, all for the card's table $T): the GPU suite (SUITE_FILTER: a
# gtest filter for a part of it), the tune (each bucket's committed entry
# competes), its winners merged into $T, and the whole benchmark (FILTER: a
# part) with $T (A) and the merged table (B), alternating, 2 rounds; NO_AB=1
# stops after the tune. Everything but the A/B's rounds (ab.tar.gz, at its
# end) lands in $OUT/$NAME/ (default tune-ab) as it is written, so a run cut
# short still brings back the suite and the tune's progress.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$OUT/${NAME:-tune-ab}
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
# The card's own table (the plan was made for it: on another card the merge
# refuses the tune's table and the A/B is skipped).
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
T=${T:-specs/tuned/${card// /_}.json}
echo "=== GPU suite ($(date +%T))"
# SUITE_FILTER (a gtest filter, e.g. '*cluster*') runs a part of it.
# Default limits keep the whole call under the device's 600 s.
OUT=$W/suite timeout ${SUITE_LIMIT:-150} bash scripts/device/run-gpu-suite.sh \
  ${SUITE_FILTER:+"--gtest_filter=$SUITE_FILTER"} > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
echo "=== tune ($(date +%T))"
OUT=$W/tune timeout ${TUNE_LIMIT:-200} bash scripts/device/run-tune.sh > "$W/tune.log" 2>&1
echo "exit $?"; tail -3 "$W/tune/tune.txt"
LD_LIBRARY_PATH=$PWD/.carry/lib .carry/bin/moelora-tune-rt merge --base "$T" \
  --update "$W/tune/tuned.json" --out "$W/merged.json" && echo merged
cp -n .carry/tune-cache/* .carry/bench-cache/ 2>/dev/null
# NO_AB=1 stops after the tune (its per-case times against the committed
# entries are the measurement; the A/B then waits for the next call).
if [ -z "${NO_AB:-}" ] && [ -f "$W/merged.json" ]; then
  A=.carry:$T B=.carry:$W/merged.json ROUNDS=2 NAME=ab OUT=$W BENCH_LIMIT=60 \
    FILTER=${FILTER:-} \
    bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
  echo "ab exit $?"; tail -1 "$W/ab.log"
fi
echo "=== done ($(date +%T))"
