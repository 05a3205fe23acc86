#!/usr/bin/env bash
# Plans the autotuning sweep here and generates every candidate into
# .carry/tune-cache (the GPU machine has no LLVM). Then, with .carry
# carried: bash scripts/device/run-tune.sh. To resume an interrupted run,
# copy its tune-progress.jsonl back to .carry/ before the next call.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SWEEP=${SWEEP:-specs/tune/sweep.yaml}
WORKLOAD=${WORKLOAD:-specs/tune/workload-h100.yaml}
# The card the table is for (its name selects the table at run time).
MOELORA_GPU=${MOELORA_GPU:-NVIDIA H200}
cmake -S . -B "$BUILD" -G Ninja >/dev/null
ninja -C "$BUILD" -j2 moelora-tune moelora-tune-rt
mkdir -p .carry/bin .carry/lib
rm -rf .carry/tune-cache
# The committed table for the card competes: its entries are each case's
# "current" candidate, so a run never replaces an entry with a slower one.
BASE_TABLE=${BASE_TABLE-specs/tuned/${MOELORA_GPU// /_}.json}
[ -f "$BASE_TABLE" ] || BASE_TABLE=
"$BUILD"/tools/moelora-tune/moelora-tune prepare --sweep "$SWEEP" \
  --workload "$WORKLOAD" --cache .carry/tune-cache --plan .carry/tune-plan.json --ptxas \
  --gpu "$MOELORA_GPU" ${BASE_TABLE:+--base-table "$BASE_TABLE"}
cp "$BUILD"/tools/moelora-tune/moelora-tune-rt .carry/bin/
strip .carry/bin/moelora-tune-rt
for lib in libfmt.so.9 libyaml-cpp.so.0.7; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/lib/
done
du -sh .carry
