#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/bench-prepare.sh,
# the variants of the table without its "fused" entries in .carry/bench-cache,
# .carry/bin/moelora-tune-rt): the path choice again on the committed table
# (its two_kernel entries now choose fuse_slices), the choice merged into it,
# and the whole benchmark with the merged table. $OUT/path-rechoice.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
T=specs/tuned/NVIDIA_H200.json
echo "=== path choice ($(date +%T))"
OUT=$W/choice timeout ${BENCH_LIMIT:-200} bash scripts/device/run-bench.sh --tuned-table $T --path-choice "$W/paths.json" > /dev/null 2>&1
echo "exit $?"; grep -A60 "^Path choice" "$W/choice/bench.txt" | head -60
echo "=== merge ($(date +%T))"
LD_LIBRARY_PATH=$PWD/.carry/lib .carry/bin/moelora-tune-rt merge --base $T --update "$W/paths.json" --out "$W/merged.json" && echo merged
echo "=== bench with the merged table ($(date +%T))"
OUT=$W/final timeout ${BENCH_LIMIT:-200} bash scripts/device/run-bench.sh --tuned-table "$W/merged.json" > /dev/null 2>&1
echo "exit $?"; tail -3 "$W/final/bench.txt"
tar czf "$OUT/path-rechoice.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
