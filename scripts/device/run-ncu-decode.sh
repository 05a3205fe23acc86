#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/bench-prepare.sh): ncu of the
# kernel matching KERNEL (a regex, default the small-batch kernel) in bench
# cases (CASES, default two decode cases), with the warp-state and
# source-counter sections, and the per-SASS-instruction stall samples of
# each (ncu --page source). $OUT/ncu-decode.tar.gz.
# TABLES (optional, "name:file ..."): each case once per tuned table, its
# outputs named <case>-<name> (e.g. a table against its reduce_scatter
# variant); BENCH_DIR (bench-env.sh): a staged candidate's bench and cache;
# NCU_LIMIT (150 s): each profile's limit (the call's results come back
# only whole: keep cases x tables x NCU_LIMIT within the call's limit).
source scripts/device/bench-env.sh
"$NCU" --version | tail -1
for c in ${CASES:-qwen3moe_w13_decode_M1_R64 qwen3moe_w13_decode_M1_R16}; do
  for t in ${TABLES:-:}; do
    [[ $t == *:* ]] || { echo "TABLES word $t: name:file expected"; exit 2; }
    n=$c table=()
    [ -n "${t%%:*}" ] && n=$c-${t%%:*}
    [ -n "${t#*:}" ] && table=(--tuned-table "${t#*:}")
    timeout "${NCU_LIMIT:-150}" "$NCU" --clock-control none --kernel-name "regex:${KERNEL:-moelora_small_batch}" \
      --launch-count 1 --section SpeedOfLight --section LaunchStats \
      --section Occupancy --section SchedulerStats --section WarpStateStats \
      --section SourceCounters --section MemoryWorkloadAnalysis \
      -o "$W/$n" -f "$BENCH_DIR"/bin/moelora-bench --filter "$c" --out "$W/bench-$n" \
      "${table[@]}" > "$W/ncu-$n.log" 2>&1
    echo "$n profile exit $?"
    "$NCU" --import "$W/$n.ncu-rep" > "$W/ncu-$n.txt" 2>&1
    "$NCU" --import "$W/$n.ncu-rep" --page source --print-source sass --csv \
      > "$W/sass-$n.csv" 2>&1
    echo "$n source exit $? ($(wc -l < "$W/sass-$n.csv") lines)"
    grep -E "Duration|Elapsed Cycles|SM Active Cycles|Warp Cycles Per Issued|Eligible Warps|Registers Per|Block Limit|Stall" "$W/ncu-$n.txt" | sed 's/  */ /g' | head -20
  done
done
tar czf "$OUT/ncu-decode.tar.gz" -C "$W" .
