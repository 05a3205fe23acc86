#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/bench-prepare.sh
# and scripts/tune-prepare.sh with SWEEP=specs/tune/sweep-prefill-wgmma.yaml,
# WORKLOAD=specs/tune/workload-prefill.yaml, for the card's table $T): the
# tune (the committed entry of each bucket competes), its winners merged into
# $T, and the prefill benchmark cases with $T and with the merged table,
# compared case by case. $OUT/wgmma-tune.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
T=${T:-specs/tuned/NVIDIA_H100_80GB_HBM3.json}
echo "=== tune ($(date +%T))"
OUT=$W/tune timeout ${TUNE_LIMIT:-420} bash scripts/device/run-tune.sh > "$W/tune.log" 2>&1
echo "exit $?"; tail -5 "$W/tune/tune.txt"
echo "=== merge ($(date +%T))"
LD_LIBRARY_PATH=$PWD/.carry/lib .carry/bin/moelora-tune-rt merge --base "$T" \
  --update "$W/tune/tuned.json" --out "$W/merged.json" && echo merged
# The winners' kernels are in the tune cache (same generator build).
cp -n .carry/tune-cache/* .carry/bench-cache/ 2>/dev/null
for t in base merged; do
  echo "=== bench $t ($(date +%T))"
  table=(--tuned-table "$T")
  [ $t = merged ] && table=(--tuned-table "$W/merged.json")
  OUT=$W/$t timeout ${BENCH_LIMIT:-120} bash scripts/device/run-bench.sh --filter prefill "${table[@]}" > /dev/null 2>&1
  echo "exit $?"; tail -1 "$W/$t/bench.txt"
done
python3 benchmarks/python/compare_bench.py "$W/base/bench.csv" "$W/merged/bench.csv" \
  --label mma=wgmma --names base merged | tee "$W/compare.txt"
tar czf "$OUT/wgmma-tune.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
