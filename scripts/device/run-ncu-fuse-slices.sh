#!/usr/bin/env bash
# On the GPU machine, .carry carried (scripts/bench-prepare.sh plus the
# variants of .carry/fs/fs0.json: every W13 two_kernel entry unfused):
# ncu of the two-kernel shrink, unfused (fs0) and as the committed table has
# it (fused at R 16 M 4096), for the W13 M4096 R16 cases. $OUT/ncu.tar.gz.
source scripts/device/bench-env.sh
echo "ncu: $NCU"
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,lts__t_sector_hit_rate.pct,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__registers_per_thread
for c in qwen3moe mixtral glm5_1; do
  ncu_case moelora_shrink "${c}_w13_two_kernel_M4096_R16" "$c-fs0" .carry/fs/fs0.json
  ncu_case moelora_shrink "${c}_w13_two_kernel_M4096_R16" "$c-table"
done
tar czf "$OUT/ncu.tar.gz" -C "$W" .
