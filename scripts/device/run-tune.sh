#!/usr/bin/env bash
# Runs on the GPU machine: times every candidate of .carry/tune-plan.json
# and writes the tuned table to $OUT/tuned.json (progress in
# $OUT/tune-progress.jsonl; a copy in .carry/ resumes an interrupted run).
set -uo pipefail
export LD_LIBRARY_PATH="$PWD/.carry/lib:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -f .carry/tune-progress.jsonl ] && cp .carry/tune-progress.jsonl "$OUT/"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/card.txt"
.carry/bin/moelora-tune-rt run --plan .carry/tune-plan.json --cache .carry/tune-cache \
  --out "$OUT/tuned.json" --progress "$OUT/tune-progress.jsonl" 2>&1 | tee "$OUT/tune.txt"
