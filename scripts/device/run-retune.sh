#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/bench-prepare.sh,
# then scripts/tune-prepare.sh with the sweep and workload to re-tune): runs
# the tune, merges its entries into the committed table T, then benches the
# merged table against T alternately (run-build-ab.sh, FILTER for the tuned
# cases). Everything lands in $OUT/retune.tar.gz and $OUT/ab-retune.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
T=${T:-specs/tuned/NVIDIA_H100_80GB_HBM3.json}
W=$(mktemp -d)
echo "=== tune ($(date +%T))"
OUT=$W/tune timeout ${TUNE_LIMIT:-300} bash scripts/device/run-tune.sh > /dev/null 2>&1
echo "exit $?"; tail -3 "$W/tune/tune.txt"
LD_LIBRARY_PATH=$PWD/.carry/lib .carry/bin/moelora-tune-rt merge --base "$T" \
  --update "$W/tune/tuned.json" --out "$W/merged.json" && echo merged
# The tuned candidates join the bench's disk cache.
cp -n .carry/tune-cache/* .carry/bench-cache/ 2>/dev/null
tar czf "$OUT/retune.tar.gz" -C "$W" .
A=.carry B=.carry:$W/merged.json NAME=ab-retune bash scripts/device/run-build-ab.sh
