#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's
# wgmma_expand section says): the fifteenth session's call, the expand on
# wgmma (issue 13, item 1: the rank as the expand's K).
#  1. GPU suite: the wgmma_expand cases. -> $OUT/part0.tar.gz
#  2. R64 A/B/C, XWG_ROUNDS rounds (default 2): A the committed table of
#     the card, B .carry/xwg-<card>.json (wgmma_expand on every sorted
#     rank-64 one_shot entry with wgmma and every sorted rank-64
#     two_kernel entry's expand), C .carry/xwg2-<card>.json (B, and the
#     sorted rank-64 one_shot entries without wgmma given wgmma and
#     wgmma_expand). -> $OUT/part1.tar.gz
#  3. ncu of qwen3moe W13 M4096 R64's one-shot kernel, A and B.
#     -> $OUT/part2.tar.gz
#  NO_SUITE=1 skips step 1, NO_C=1 side C, NO_NCU=1 step 3. CONFIRM=1 on an H200 then
#  runs run-confirm.sh (the merged H200 table). -> $OUT/confirm.tar.gz
set -uo pipefail
OUT=${OUT:-/tmp/out}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
W=$OUT/xwg
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
if [ -z "${NO_SUITE:-}" ]; then
  echo "=== GPU suite ($(date +%T))"
  OUT=$W/suite timeout ${SUITE_LIMIT:-200} bash scripts/device/run-gpu-suite.sh \
    --gtest_filter='*_xwg*' > "$W/suite.txt" 2>&1
  echo "exit $?"
  grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
  tar czf "$OUT/part0.tar.gz" -C "$W" card.txt suite.txt suite
fi
echo "=== A/B/C ($(date +%T))"
# A table serves only the GPU it names.
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json tag=h100
[[ $card == *H200* ]] && TA=specs/tuned/NVIDIA_H200.json tag=h200
C=.carry:.carry/xwg2-$tag.json
[ -n "${NO_C:-}" ] && C=
A=.carry:$TA B=.carry:.carry/xwg-$tag.json C=$C \
  FILTER=_R64 ROUNDS=${XWG_ROUNDS:-2} NAME=ab OUT=$W \
  BENCH_LIMIT=${BENCH_LIMIT:-80} \
  bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
echo "ab exit $?"; grep geomean "$W/ab.log"
tar czf "$OUT/part1.tar.gz" -C "$OUT" xwg && rm -rf "$W"
if [ -z "${NO_NCU:-}" ]; then
  echo "=== ncu ($(date +%T))"
  source scripts/device/bench-env.sh
  echo "$card" > "$W/card.txt"
  for side in table:$TA xwg:.carry/xwg-$tag.json; do
    name=${side%%:*}
    timeout 60 "$NCU" --clock-control none --kernel-name regex:moelora_one_shot \
      --launch-count 1 --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --section Occupancy --section LaunchStats \
      --section MemoryWorkloadAnalysis \
      .carry/bin/moelora-bench --filter qwen3moe_w13_prefill_M4096_R64 \
      --out "$W/bench-$name" --tuned-table "${side#*:}" > "$W/ncu-$name.txt" 2>&1
    echo "$name exit $?"
    grep -E "moelora_one_shot|Duration|DRAM Throughput|Memory Throughput|Issue Slots Busy|One or More Eligible|Eligible Warps|Registers Per|Achieved Occupancy|Shared Memory Configuration Size" \
      "$W/ncu-$name.txt" | sed 's/  */ /g' | head -14
  done
  tar czf "$OUT/part2.tar.gz" -C "$W" .
fi
if [ -n "${CONFIRM:-}" ] && [[ $card == *H200* ]]; then
  echo "=== confirm ($(date +%T))"
  bash scripts/device/run-confirm.sh
fi
echo "=== done ($(date +%T))"
