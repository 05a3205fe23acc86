#!/usr/bin/env bash
# On the GPU machine, .carry carried (staged as for run-persistent.sh, with
# .carry/ps2-<card>.json): where the persistent grid's time goes.
#  1. GPU suite, the resident-grid cases (*_psr*): each prints the resident
#     programs the driver reported for its kernel.
#  2. Prefill, PS_ROUNDS rounds (default 2), sides alternating: A the
#     committed table, B ps2 (persistent, registers matched), C ps2 with
#     MOELORA_PERSISTENT_PROGRAMS=${C_PROGRAMS:-100000000} (a grid of every
#     program: each walks at most one row block, so C - A is the loop's
#     code alone and B - C the resident grid's scheduling).
#  -> $OUT/diag.tar.gz
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$OUT/diag
mkdir -p "$W"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "$card" | tee "$W/card.txt"
OUT=$W/suite timeout 120 bash scripts/device/run-gpu-suite.sh \
  --gtest_filter='*_psr*' > "$W/suite.txt" 2>&1
grep -E "PASSED|FAILED|resident" "$W/suite.txt" | head -40
TA=specs/tuned/NVIDIA_H100_80GB_HBM3.json TB=.carry/ps2-h100.json
if [[ $card == *H200* ]]; then
  TA=specs/tuned/NVIDIA_H200.json TB=.carry/ps2-h200.json
fi
for r in $(seq 1 "${PS_ROUNDS:-2}"); do
  for side in A B C; do
    t=$TA; env=()
    [ $side != A ] && t=$TB
    [ $side == C ] && env=(MOELORA_PERSISTENT_PROGRAMS=${C_PROGRAMS:-100000000})
    echo "=== $side round $r ($(date +%T))"
    env "${env[@]}" OUT=$W/$side$r timeout 60 bash scripts/device/run-bench.sh \
      --filter prefill --tuned-table "$t" > /dev/null 2>&1
  done
done
for s in A B C; do
  python3 benchmarks/python/median_rounds.py "$W"/$s[0-9]*/bench.csv --out "$W/$s.csv"
done
python3 benchmarks/python/compare_bench.py "$W/A.csv" "$W/B.csv" --names A B > "$W/compare-AB.txt"
python3 benchmarks/python/compare_bench.py "$W/A.csv" "$W/C.csv" --names A C > "$W/compare-AC.txt"
python3 benchmarks/python/compare_bench.py "$W/C.csv" "$W/B.csv" --names C B > "$W/compare-CB.txt"
tail -1 "$W"/compare-*.txt
tar czf "$OUT/diag.tar.gz" -C "$OUT" diag
