#!/usr/bin/env bash
# Runs on the GPU machine (repository root, .carry carried): the benchmark,
# then the chart. Results land in $OUT (bench.csv, bench.json, bench.png).
# BENCH_DIR (default .carry) holds bin/moelora-bench and bench-cache/: another
# build's, staged beside it, gives an A/B on one machine (run-build-ab.sh).
set -uo pipefail
BENCH_DIR=${BENCH_DIR:-.carry}
export LD_LIBRARY_PATH="$PWD/.carry/lib:${LD_LIBRARY_PATH:-}"
export MOELORA_CACHE_DIR="$PWD/$BENCH_DIR/bench-cache"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/card.txt"
"$BENCH_DIR"/bin/moelora-bench --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.txt"
python3 benchmarks/plot_bench.py "$OUT/bench.csv" "$OUT/bench.png" 2>&1 | tail -2
