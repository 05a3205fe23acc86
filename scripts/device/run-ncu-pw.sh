#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged for run-pw.sh): ncu's speed of
# light, warp states and scheduler statistics of the one-shot kernel of
# qwen3moe W13 M512 R16 (wgmma), without (table) and with the producer warp
# (pw). $OUT/ncu-pw.tar.gz.
source scripts/device/bench-env.sh
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json TB=.carry/pw.json
[[ $card == *H200* ]] && TA=.carry/h100-as-h200.json TB=.carry/pw-h200.json
echo "$card" > "$W/card.txt"
for side in table:$TA pw:$TB; do
  name=${side%%:*}
  timeout 60 "$NCU" --clock-control none --kernel-name regex:moelora_one_shot \
    --launch-count 1 --section SpeedOfLight --section WarpStateStats \
    --section SchedulerStats --section Occupancy --section LaunchStats \
    .carry/bin/moelora-bench --filter qwen3moe_w13_prefill_M512_R16 \
    --out "$W/bench-$name" --tuned-table "${side#*:}" > "$W/ncu-$name.txt" 2>&1
  echo "$name exit $?"
  grep -E "moelora_one_shot|Duration|DRAM Throughput|Issue Slots Busy|One or More Eligible|Active Warps Per|Eligible Warps|Block Size|Registers Per|Achieved Occupancy|Stall" \
    "$W/ncu-$name.txt" | sed 's/  */ /g' | head -16
done
tar czf "$OUT/ncu-pw.tar.gz" -C "$W" .
