#!/usr/bin/env bash
# On the GPU machine, .carry carried: a committed table's landed entries
# confirmed by a whole-bench A/B (2 rounds, alternating) against the table
# before them, on the card the table names. SUITE=1 runs the whole GPU
# suite first.
#  H200: .carry/h200-old.json (A, the H200 table before the twelfth
#        session took the H100 table's configs) against the committed
#        H200 table (B, the default lookup).
#  H100: .carry/before.json (A, the H100 table before the eleventh
#        session's entries) against the committed H100 table (B).
# A table serves only the GPU it names, so the card picks the pair; with
# no A staged for it, nothing runs. Everything in $OUT/confirm.tar.gz.
set -uo pipefail
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then
  old=.carry/h200-old.json
else
  old=.carry/before.json
fi
if [ ! -f "$old" ]; then
  echo "no $old staged: nothing to confirm on this card"
  exit 0
fi
A=.carry:$old B=.carry ROUNDS=2 NAME=confirm BENCH_LIMIT=80 \
  bash scripts/device/run-build-ab.sh
