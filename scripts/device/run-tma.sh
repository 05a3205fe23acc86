#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as NEXT-GPU-RUN.md's first
# section says): the eleventh session's call, on whichever card came.
#  1. GPU suite: the tma_weights cases (every wgmma case again with its A
#     tiles by bulk tensor copies), the deep-pipeline and the 32-row
#     few-rows cases.
#  2. The committed table (A) against .carry/tma.json (B: tma_weights on
#     every wgmma entry) over the prefill cases, 3 rounds, for
#     bucket_flag_choice.py --flag tma_weights --token tma=a.
#  -> $OUT/part1.tar.gz (ONLY_TMA=1 stops here)
#  3. H100: the few_rows_tile 32 A/B (M 512 cases) -> part2.tar.gz, then
#     the deep-stages tune of the M 64 buckets with its merge and A/B
#     -> part3.tar.gz.
#     H200: the H200 table against the H100 table over the whole bench
#     -> part2.tar.gz.
# In order of need, so that a call cut short keeps the most.
set -uo pipefail
OUT=${OUT:-/tmp/out}
SUITE=${SUITE:-'*_tma*:*stages*:*rows32*'}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case $card in
*H200*) T=specs/tuned/NVIDIA_H200.json ;;
*) T=specs/tuned/NVIDIA_H100_80GB_HBM3.json ;;
esac
W=$OUT/tma
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$W/card.txt"
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout 150 bash scripts/device/run-gpu-suite.sh \
  --gtest_filter="$SUITE" > "$W/suite.txt" 2>&1
echo "exit $?"
grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
echo "=== tma A/B ($(date +%T))"
# The H100 table's wgmma choices are the ones tma.json extends: both sides
# use tables of the same entries, on either card. A table serves only the
# GPU it names: on an H200, copies that name it.
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json TB=.carry/tma.json
if [[ $card == *H200* ]]; then
  for t in TA TB; do
    python3 -c "import json,sys; t=json.load(open(sys.argv[1])); t['gpu']='NVIDIA H200'; json.dump(t, open(sys.argv[2], 'w'))" \
      "${!t}" "$W/$t.json"
    printf -v "$t" '%s' "$W/$t.json"
  done
fi
A=.carry:$TA B=.carry:$TB \
  FILTER=prefill ROUNDS=${TMA_ROUNDS:-3} NAME=ab OUT=$W BENCH_LIMIT=60 \
  bash scripts/device/run-build-ab.sh > "$W/ab.log" 2>&1
echo "tma exit $?"; tail -3 "$W/ab.log"
tar czf "$OUT/part1.tar.gz" -C "$OUT" tma && rm -rf "$W"
# ONLY_TMA=1: steps 1-2 only (a tma_weights kernel change measured again).
[ -n "${ONLY_TMA:-}" ] && exit
if [[ $card == *H200* ]]; then
  W=$OUT/h200
  mkdir -p "$W"
  A=.carry B=.carry:.carry/h100-as-h200.json ROUNDS=2 \
    NAME=tables OUT=$W BENCH_LIMIT=80 \
    bash scripts/device/run-build-ab.sh > "$W/tables.log" 2>&1
  echo "tables exit $?"; tail -1 "$W/tables.log"
  tar czf "$OUT/part2.tar.gz" -C "$OUT" h200 && rm -rf "$W"
  echo "=== done ($(date +%T))"
  exit
fi
W=$OUT/fr32
mkdir -p "$W"
echo "=== fr32 A/B ($(date +%T))"
A=.carry:$T B=.carry:.carry/fr32.json FILTER=_M512 ROUNDS=2 NAME=fr32 \
  OUT=$W BENCH_LIMIT=60 bash scripts/device/run-build-ab.sh > "$W/fr32.log" 2>&1
echo "fr32 exit $?"; tail -1 "$W/fr32.log"
tar czf "$OUT/part2.tar.gz" -C "$OUT" fr32 && rm -rf "$W"
# The tune (its suite step runs no case: the suite ran above).
SUITE_FILTER=-* NAME=m64 FILTER=_M64_ TUNE_LIMIT=120 \
  bash scripts/device/run-tune-ab.sh
tar czf "$OUT/part3.tar.gz" -C "$OUT" m64 && rm -rf "$OUT/m64"
echo "=== done ($(date +%T))"
