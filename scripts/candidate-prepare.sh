#!/usr/bin/env bash
# Stages this build as a candidate beside the build already staged in .carry
# (the A side): .carry/$CAND.tgz, gzipped for the 64 MiB carry limit. Then,
# with .carry carried: CAND=$CAND bash scripts/device/run-candidate.sh
# The A side's bench cache must hold the kernels of the tables of the card
# that runs it (scripts/bench-prepare.sh with MOELORA_GPU set to each).
# TABLES (space-separated tuned-table files) are copied into the candidate
# and its bench cache holds their kernels too, generated for the card the
# file name starts with (h100-*: the H100, h200-*: the H200), else for
# TABLES_GPU (default the H200; a cache staged for one card lacks the
# other's 16-block-cluster fallbacks): a side
# B=.carry/$CAND:.carry/$CAND/<table file name> runs one.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CAND=${CAND:-cand}
ninja -C "$BUILD" -j2 moelora-bench moelora-bench-prepare moelora_gpu_tests \
  make-gpu-bundle prepare-capi-cache
W=$(mktemp -d)
mkdir -p "$W/$CAND/bin"
"$BUILD"/test/gpu/make-gpu-bundle "$W/$CAND/gpu-bundle"
for gpu in "NVIDIA H200" "NVIDIA H100 80GB HBM3"; do
  MOELORA_TARGET_GPU="$gpu" "$BUILD"/test/gpu/prepare-capi-cache "$W/$CAND/capi-cache" >/dev/null
  MOELORA_TARGET_GPU="$gpu" "$BUILD"/benchmarks/moelora-bench-prepare "$W/$CAND/bench-cache" >/dev/null
done
for table in ${TABLES:-}; do
  cp "$table" "$W/$CAND/"
  case "$(basename "$table")" in
  h100-*) gpu="NVIDIA H100 80GB HBM3" ;;
  h200-*) gpu="NVIDIA H200" ;;
  *) gpu="${TABLES_GPU:-NVIDIA H200}" ;;
  esac
  MOELORA_TARGET_GPU="$gpu" "$BUILD"/benchmarks/moelora-bench-prepare \
    "$W/$CAND/bench-cache" --tuned-table "$table" >/dev/null
done
cp "$BUILD"/benchmarks/moelora-bench "$BUILD"/test/gpu/moelora_gpu_tests "$W/$CAND/bin/"
strip "$W/$CAND/bin/"*
mkdir -p .carry
tar czf ".carry/$CAND.tgz" -C "$W" "$CAND"
rm -rf "$W"
du -sh ".carry/$CAND.tgz" .carry
