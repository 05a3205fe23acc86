#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/gpu-prepare.sh,
# scripts/bench-prepare.sh): the GPU suite with programmatic dependent launch
# (PDL, the default on sm_90), the benchmark with PDL and again with
# MOELORA_PDL=0 (same kernels, plain launches), and the practical launch
# floor (benchmarks/python/launch_floor.py) against the decode cases.
# Results: $OUT/suite/, $OUT/pdl-on/, $OUT/pdl-off/, $OUT/launch-floor.*.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
BENCH_ARGS=${BENCH_ARGS:-}
echo "=== GPU suite, PDL on ($(date +%T))"
OUT=$OUT/suite timeout ${SUITE_LIMIT:-200} bash scripts/device/run-gpu-suite.sh > "$OUT/suite.txt" 2>&1
tail -4 "$OUT/suite.txt"
echo "=== bench, PDL on ($(date +%T))"
# shellcheck disable=SC2086
OUT=$OUT/pdl-on timeout ${BENCH_LIMIT:-170} bash scripts/device/run-bench.sh $BENCH_ARGS > /dev/null 2>&1
echo "exit $?"; tail -3 "$OUT/pdl-on/bench.txt"
echo "=== bench, PDL off ($(date +%T))"
# shellcheck disable=SC2086
MOELORA_PDL=0 OUT=$OUT/pdl-off timeout ${BENCH_LIMIT:-170} bash scripts/device/run-bench.sh $BENCH_ARGS > /dev/null 2>&1
echo "exit $?"
echo "=== launch floor ($(date +%T))"
timeout 60 python3 benchmarks/python/launch_floor.py --bench "$OUT/pdl-on/bench.csv" \
  --json "$OUT/launch-floor.json" 2>&1 | tee "$OUT/launch-floor.txt"
if [ -f "$OUT/pdl-on/bench.csv" ] && [ -f "$OUT/pdl-off/bench.csv" ]; then
  python3 - "$OUT/pdl-off/bench.csv" "$OUT/pdl-on/bench.csv" <<'PY'
import csv, math, sys
off = {r["case"]: float(r["us"]) for r in csv.DictReader(open(sys.argv[1]))}
on = list(csv.DictReader(open(sys.argv[2])))
by = {}
for r in on:
    if r["case"] in off and off[r["case"]] > 0:
        by.setdefault(r["path"], []).append((r["case"], float(r["us"]) / off[r["case"]]))
for path, xs in by.items():
    g = math.exp(sum(math.log(x) for _, x in xs) / len(xs))
    worst = max(xs, key=lambda t: t[1])
    print(f"PDL on/off {path:12s} n={len(xs):3d} geomean {g:.3f} best {min(x for _, x in xs):.3f} worst {worst[1]:.3f} ({worst[0]})")
PY
fi
echo "=== done ($(date +%T))"
