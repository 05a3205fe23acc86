#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/bench-prepare.sh): ncu of the
# kernel matching KERNEL (a regex, default the small-batch kernel) in bench
# cases (CASES, default two decode cases), with the warp-state and
# source-counter sections, and the per-SASS-instruction stall samples of
# each (ncu --page source). $OUT/ncu-decode.tar.gz.
source scripts/device/bench-env.sh
"$NCU" --version | tail -1
for c in ${CASES:-qwen3moe_w13_decode_M1_R64 qwen3moe_w13_decode_M1_R16}; do
  timeout 150 "$NCU" --clock-control none --kernel-name "regex:${KERNEL:-moelora_small_batch}" \
    --launch-count 1 --section SpeedOfLight --section LaunchStats \
    --section Occupancy --section SchedulerStats --section WarpStateStats \
    --section SourceCounters --section MemoryWorkloadAnalysis \
    -o "$W/$c" -f .carry/bin/moelora-bench --filter "$c" --out "$W/bench-$c" \
    > "$W/ncu-$c.log" 2>&1
  echo "$c profile exit $?"
  "$NCU" --import "$W/$c.ncu-rep" > "$W/ncu-$c.txt" 2>&1
  "$NCU" --import "$W/$c.ncu-rep" --page source --print-source sass --csv \
    > "$W/sass-$c.csv" 2>&1
  echo "$c source exit $? ($(wc -l < "$W/sass-$c.csv") lines)"
  grep -E "Duration|Elapsed Cycles|SM Active Cycles|Warp Cycles Per Issued|Eligible Warps|Registers Per|Block Limit|Stall" "$W/ncu-$c.txt" | sed 's/  */ /g' | head -20
done
tar czf "$OUT/ncu-decode.tar.gz" -C "$W" .
