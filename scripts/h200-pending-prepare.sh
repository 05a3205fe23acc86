#!/usr/bin/env bash
# Stages .carry for scripts/device/run-h200-pending.sh: everything the H200
# has not confirmed yet, in one device call (NEXT-GPU-RUN.md, first section).
#  - this build's GPU suite and bench (gpu-prepare, bench-prepare), with the
#    kernels of the H200 tables before the fifteenth session's wgmma_expand
#    entries (9b40e77) and before the twelfth session's merge (bea1517);
#  - the A side of the sixteenth session's build A/B (PERF-LOG s1): BASE's
#    (default 27bc74e) moelora-bench and bench cache, built in a worktree
#    under $OLD_DIR (about 20 minutes the first time), and BASE's H200 table;
#  - the PTX bundle gzipped (the device tool carries 64 MiB at most).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-27bc74e}
OLD_DIR=${OLD_DIR:-/tmp/moelora-$BASE}
if [ ! -x "$OLD_DIR/build/benchmarks/moelora-bench-prepare" ]; then
  [ -d "$OLD_DIR" ] || git worktree add --detach "$OLD_DIR" "$BASE"
  cmake -S "$OLD_DIR" -B "$OLD_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$OLD_DIR/build" -j2 moelora-bench moelora-bench-prepare
fi
scripts/gpu-prepare.sh
scripts/bench-prepare.sh
git show 9b40e77:specs/tuned/NVIDIA_H200.json > .carry/h200-pre-xwg.json
git show bea1517:specs/tuned/NVIDIA_H200.json > .carry/h200-old.json
for t in .carry/h200-pre-xwg.json .carry/h200-old.json; do
  MOELORA_TARGET_GPU="NVIDIA H200" build/benchmarks/moelora-bench-prepare .carry/bench-cache --tuned-table "$t"
done
mkdir -p .carry/old/bin
git show "$BASE":specs/tuned/NVIDIA_H200.json > .carry/old/h200.json
MOELORA_TARGET_GPU="NVIDIA H200" "$OLD_DIR"/build/benchmarks/moelora-bench-prepare .carry/old/bench-cache --tuned-table .carry/old/h200.json
cp "$OLD_DIR"/build/benchmarks/moelora-bench .carry/old/bin/
strip .carry/old/bin/moelora-bench
(cd .carry && tar czf gpu-bundle.tgz gpu-bundle && rm -rf gpu-bundle)
du -sh .carry
