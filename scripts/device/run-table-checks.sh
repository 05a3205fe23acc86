#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md says): the
# ninth session's batch, in one call.
#  1. GPU suite, then .carry/base (A) against .carry (B), both on the H100
#     table, so it runs the same way on an H100 or an H200: the few-rows
#     kernels in their landed form.
#  2. The committed H100 table (A) against .carry/mb5.json (B, the five
#     buckets that lost with few_rows: few_rows plus min_blocks_per_sm 5),
#     rank-16 cases only.
#  3. On an H200 only: the H200 table (A) against the H100 table (B), to
#     choose per bucket which entries the H200 takes.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
T=specs/tuned/NVIDIA_H100_80GB_HBM3.json
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
SUITE=1 SUITE_LIMIT=150 A=.carry/base:$T B=.carry:$T ROUNDS=2 BENCH_LIMIT=60 \
  bash scripts/device/run-build-ab.sh > "$OUT/ab.log" 2>&1
echo "step 1 exit $?"
if [ -f .carry/mb5.json ]; then
  A=.carry:$T B=.carry:.carry/mb5.json FILTER=_R16 ROUNDS=2 NAME=mb5 \
    BENCH_LIMIT=60 bash scripts/device/run-build-ab.sh > "$OUT/mb5.log" 2>&1
  echo "step 2 exit $?"
fi
if [[ $card == *H200* ]]; then
  A=.carry B=.carry:$T ROUNDS=2 NAME=tables BENCH_LIMIT=60 \
    bash scripts/device/run-build-ab.sh > "$OUT/tables.log" 2>&1
  echo "step 3 exit $?"
fi
# 4. While the call has time left: ncu of the M 512 one-shot, where the
#    floor fractions are lowest (0.43-0.65 on the H100).
if [ "$SECONDS" -lt 420 ]; then
  KERNEL=moelora_one_shot \
    CASES="${NCU_CASES:-mixtral_w2_prefill_M512_R16 qwen3moe_w13_prefill_M512_R16}" \
    bash scripts/device/run-ncu-decode.sh > "$OUT/ncu.log" 2>&1
  echo "step 4 exit $?"
fi
