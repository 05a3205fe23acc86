#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/bench-prepare.sh with the
# committed table of the card, and .carry/wg/base.json: the table before the
# wgmma tune, whose variants are in the bench cache too):
# 1. ncu of the one-shot kernel with the old and the new table for the cases
#    the wgmma tune changed most;
# 2. the whole benchmark with the old table and with the committed one.
# $OUT/wgmma-final.tar.gz.
source scripts/device/bench-env.sh
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,launch__grid_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers
for c in ${NCU_CASES:-qwen3moe_w13_prefill_M4096_R64 mixtral_w2_prefill_M4096_R64 qwen3moe_w2_prefill_M512_R64_sparse}; do
  ncu_case moelora_one_shot "$c" "$c-base" .carry/wg/base.json
  ncu_case moelora_one_shot "$c" "$c-table"
done
for t in base table; do
  echo "=== bench $t ($(date +%T))"
  args=()
  [ "$t" = base ] && args=(--tuned-table .carry/wg/base.json)
  OUT=$W/bench-$t timeout ${BENCH_LIMIT:-150} bash scripts/device/run-bench.sh "${args[@]}" > /dev/null 2>&1
  echo "exit $?"; tail -1 "$W/bench-$t/bench.txt"
done
python3 benchmarks/python/compare_bench.py "$W/bench-base/bench.csv" "$W/bench-table/bench.csv" \
  --label mma=wgmma --min-change 0.02 --names base table | tee "$W/compare.txt"
tar czf "$OUT/wgmma-final.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
