#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/gpu-prepare.sh,
# scripts/bench-prepare.sh, then scripts/wgmma-prepare.sh, which writes
# .carry/wg/wg1.json: the committed table with every sorted one_shot entry
# on wgmma, and adds its kernels to the bench cache).
# 1. SASS: the wgmma one-shot assembled for sm_90a holds HGMMA.
# 2. The GPU suite (with the wgmma cases).
# 3. The prefill benchmark cases with the committed table (wg0) and with
#    wg1, compared case by case where wg1's plan runs wgmma.
# Everything lands in $OUT/wgmma.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
echo "=== SASS ($(date +%T))"
for p in .carry/wg/sass/*.ptx; do
  ptxas -arch=sm_90a "$p" -o "$W/$(basename "$p" .ptx).cubin" &&
    cuobjdump -sass "$W/$(basename "$p" .ptx).cubin" > "$W/$(basename "$p" .ptx).sass"
  echo "$(basename "$p"): HGMMA $(grep -c HGMMA "$W/$(basename "$p" .ptx).sass" 2>/dev/null)" \
    "LDSM $(grep -c LDSM "$W/$(basename "$p" .ptx).sass" 2>/dev/null)" \
    "HMMA $(grep -c HMMA "$W/$(basename "$p" .ptx).sass" 2>/dev/null)"
done 2>&1 | tee "$W/sass-summary.txt"
if [ -z "${SKIP_SUITE:-}" ]; then
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout ${SUITE_LIMIT:-240} bash scripts/device/run-gpu-suite.sh > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "wgmma|FAILED|PASSED" "$W/suite.txt" | tail -40
fi
FILTER=${FILTER:-prefill}
read -r -a tables <<< "${TABLES:-wg0 wg1}"
for t in "${tables[@]}"; do
  echo "=== bench $t ($(date +%T))"
  table=()
  [ "$t" != wg0 ] && table=(--tuned-table ".carry/wg/$t.json")
  OUT=$W/$t timeout ${BENCH_LIMIT:-200} bash scripts/device/run-bench.sh --filter "$FILTER" "${table[@]}" > /dev/null 2>&1
  echo "exit $?"; tail -2 "$W/$t/bench.txt"
done
A=${tables[0]} B=${tables[1]}
if [ -f "$W/$A/bench.csv" ] && [ -f "$W/$B/bench.csv" ]; then
  python3 benchmarks/python/compare_bench.py "$W/$A/bench.csv" "$W/$B/bench.csv" \
    --only mma=wgmma --names mma.sync wgmma | tee "$W/compare.txt"
fi
tar czf "$OUT/wgmma.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
